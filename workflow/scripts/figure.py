import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.figures import figure

datasets, methods = snakemake.params.datasets, snakemake.params.methods
paths = iter(snakemake.input.predictions)  # expand() order: dataset-major, then method
predictions = {d: {m: next(paths) for m in methods} for d in datasets}
figure(
    snakemake.wildcards.task,
    predictions,
    dict(zip(datasets, snakemake.input.pairs)),
    snakemake.params.figure,
    snakemake.output[0],
)
