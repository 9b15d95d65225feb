import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.device import set_threads
from emdiffuse.steps import evaluate

set_threads(snakemake.threads)
evaluate(
    snakemake.wildcards.task,
    snakemake.wildcards.dataset,
    dict(zip(snakemake.params.methods, snakemake.input.predictions)),
    snakemake.input.pairs,
    snakemake.params.metrics,
    snakemake.output.metrics,
    threshold=snakemake.params.threshold,
)
