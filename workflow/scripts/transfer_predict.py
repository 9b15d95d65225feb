import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.train_predict import predict

variants = list(snakemake.output.keys())
predict(
    [snakemake.input[v] for v in variants],
    [snakemake.input.pairs] * len(variants),
    snakemake.params.seed,
    [snakemake.output[v] for v in variants],
    threads=snakemake.threads,
    settings=snakemake.params.settings,
)
