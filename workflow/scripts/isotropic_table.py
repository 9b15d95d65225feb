import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.isotropic import isotropic_table

isotropic_table(
    list(snakemake.input),
    snakemake.params.metrics,
    snakemake.params.methods,
    snakemake.params.budgets,
    snakemake.params.factors,
    snakemake.params.unscored,
    snakemake.output.csv,
    snakemake.output.md,
    threshold=snakemake.params.threshold,
)
