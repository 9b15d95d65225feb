import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.steps import predict

predict(
    snakemake.input.model,
    snakemake.input.pairs,
    snakemake.params.seed,
    snakemake.output.predictions,
    threads=snakemake.threads,
)
