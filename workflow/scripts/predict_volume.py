import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.isotropic import predict_volume

predict_volume(
    snakemake.wildcards.method,
    snakemake.params.method_params,
    snakemake.params.z_factor,
    snakemake.input.get("model"),
    snakemake.input.sections,
    snakemake.params.seed,
    snakemake.output.prediction,
    snakemake.output.get("uncertainty"),
    threads=snakemake.threads,
)
