import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.scoring import table

table(
    snakemake.wildcards.task,
    list(snakemake.input.metrics),
    snakemake.params.metrics,
    snakemake.params.methods,
    snakemake.params.budgets,
    snakemake.output.csv,
    snakemake.output.md,
    threshold=snakemake.params.threshold,
    model_paths=list(snakemake.input.models),
    budget=snakemake.params.budget,
)
