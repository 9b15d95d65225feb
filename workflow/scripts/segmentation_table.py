import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.segmentation import segmentation_table

segmentation_table(list(snakemake.input), snakemake.params.classes, snakemake.output.csv, snakemake.output.md)
