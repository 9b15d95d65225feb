import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.steps import figure

predictions = {k: v for k, v in snakemake.input.items() if k != "pairs"}
figure(
    snakemake.wildcards.task,
    predictions,
    snakemake.input.pairs,
    snakemake.params.figure,
    snakemake.output[0],
)
