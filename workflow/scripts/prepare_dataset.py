import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.data import prepare_dataset

prepare_dataset(
    snakemake.wildcards.dataset,
    snakemake.params.entry,
    snakemake.params.seed,
    snakemake.output.volume,
    snakemake.output.labels,
    snakemake.output.acquisitions,
)
