import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.transfer import finetune

finetune(
    snakemake.input.model,
    snakemake.input.pairs,
    snakemake.params.train,
    snakemake.params.seed,
    snakemake.output.model,
    snakemake.output.history,
    factor=snakemake.params.factor,
    threads=snakemake.threads,
)
