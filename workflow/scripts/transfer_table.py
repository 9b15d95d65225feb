import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.transfer import table

table(
    list(snakemake.input.metrics),
    list(snakemake.input.one_pairs),
    snakemake.params.transfer,
    snakemake.params.methods,
    snakemake.params.budgets,
    snakemake.output.csv,
    snakemake.output.md,
)
