import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.device import set_threads
from emdiffuse.transfer import evaluate, prediction_inputs

set_threads(snakemake.threads)
evaluate(
    snakemake.wildcards.task,
    snakemake.wildcards.target,
    prediction_inputs(dict(snakemake.input.items())),
    snakemake.input.pairs,
    snakemake.params.metrics,
    snakemake.output.metrics,
    threshold=snakemake.params.threshold,
)
