import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.models.distributed import devices_for
from emdiffuse.tasks.image.train_predict import train

train(
    snakemake.params.method,
    snakemake.params.method_params,
    snakemake.input.pairs,
    snakemake.params.seed,
    snakemake.output.model,
    snakemake.output.history,
    factor=snakemake.params.factor,
    threads=snakemake.threads,
    # read here, not a rule param: how to predict is stored with the model but must not retrain it
    predict=snakemake.config["methods"][snakemake.params.method].get("predict"),
    devices=devices_for(snakemake.resources.get("gpu", 0)),  # > 1: data-parallel over the job's GPUs
)
