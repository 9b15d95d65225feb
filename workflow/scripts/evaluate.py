import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.device import set_threads
from emdiffuse.tasks.image.scoring import evaluate

set_threads(snakemake.threads)
methods = snakemake.params.methods
evaluate(
    snakemake.wildcards.task,
    snakemake.wildcards.dataset,
    dict(zip(methods, snakemake.input.predictions)),
    snakemake.input.pairs,
    snakemake.params.metrics,
    snakemake.output.metrics,
    calibrations=dict(zip(methods, snakemake.input.calibrations)),
)
