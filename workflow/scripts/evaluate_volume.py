import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.device import set_threads
from emdiffuse.tasks.isotropic import evaluate_volumes

set_threads(snakemake.threads)
methods, sampled = snakemake.params.methods, snakemake.params.sampled
evaluate_volumes(
    snakemake.wildcards.dataset,
    dict(zip(methods, snakemake.input.predictions)),
    snakemake.input.truth,
    snakemake.params.metrics,
    snakemake.params.planes_per_view,
    snakemake.output.metrics,
    uncertainties=dict(zip(sampled, snakemake.input.uncertainties)),
    threshold=snakemake.params.threshold,
)
