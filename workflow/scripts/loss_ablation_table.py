import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.studies.loss_ablation import loss_ablation

variants = ("on", "off")
loss_ablation(
    {v: snakemake.input[f"predictions_{v}"] for v in variants},
    {v: snakemake.input[f"history_{v}"] for v in variants},
    snakemake.input.subset,
    snakemake.params.metrics,
    snakemake.params.budget,
    snakemake.params.about,
    snakemake.output.csv,
    snakemake.output.md,
    threshold=snakemake.params.threshold,
)
