import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.device import set_threads
from emdiffuse.tasks.transfer import evaluate

set_threads(snakemake.threads)
evaluate(
    snakemake.wildcards.task,
    snakemake.wildcards.target,
    {(method, variant): path for method, variant, path in snakemake.params.predictions},
    snakemake.input.pairs,
    snakemake.params.metrics,
    snakemake.output.metrics,
    threshold=snakemake.params.threshold,
)
