import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.figures import phantom_figure

phantom_figure(list(snakemake.input.volumes), snakemake.input.reference, snakemake.output[0])
