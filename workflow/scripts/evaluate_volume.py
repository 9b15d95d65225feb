import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.device import set_threads
from emdiffuse.isotropic import evaluate_volume

set_threads(snakemake.threads)
evaluate_volume(
    snakemake.wildcards.dataset,
    snakemake.wildcards.method,
    snakemake.input.prediction,
    snakemake.input.truth,
    snakemake.params.metrics,
    snakemake.params.planes_per_view,
    snakemake.output.metrics,
    uncertainty_path=snakemake.input.get("uncertainty"),
    threshold=snakemake.params.threshold,
)
