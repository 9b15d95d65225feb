import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.scoring import calibration

calibration(
    snakemake.wildcards.task,
    list(snakemake.input),
    snakemake.output.csv,
    snakemake.output.md,
    snakemake.output.png,
)
