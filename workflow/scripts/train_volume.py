import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.models.distributed import devices_for
from emdiffuse.tasks.isotropic import train_volume

train_volume(
    snakemake.wildcards.method,
    snakemake.params.method_params,
    snakemake.params.z_factor,
    snakemake.input.volume,
    snakemake.params.seed,
    snakemake.output.model,
    snakemake.output.history,
    # read here, not a rule param: how to predict is stored with the model but must not retrain it
    predict=snakemake.config["methods"][snakemake.wildcards.method].get("predict"),
    threads=snakemake.threads,
    devices=devices_for(snakemake.resources.get("gpu", 0)),  # > 1: data-parallel over the job's GPUs
)
