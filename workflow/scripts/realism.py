import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.realism import realism

realism(
    dict(zip(snakemake.params.datasets, snakemake.input.volumes)),
    snakemake.params.kinds,
    snakemake.input.reference,
    snakemake.output.csv,
    snakemake.output.md,
    snakemake.output.png,
)
