import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.device import set_threads
from emdiffuse.steps import evaluate

set_threads(snakemake.threads)
evaluate(
    snakemake.wildcards.task,
    snakemake.wildcards.dataset,
    snakemake.wildcards.method,
    snakemake.input.predictions,
    snakemake.input.pairs,
    snakemake.params.metrics,
    snakemake.output.metrics,
    threshold=snakemake.params.threshold,
)
