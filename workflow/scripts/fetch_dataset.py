import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.data import fetch_dataset

fetch_dataset(
    snakemake.wildcards.dataset,
    snakemake.params.entry,
    snakemake.params.cache_dir,
    snakemake.output.manifest,
)
