import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.segmentation import train_segmenter

train_segmenter(
    snakemake.params.segmentation,
    snakemake.input.volume,
    snakemake.input.labels,
    snakemake.params.seed,
    snakemake.output.model,
    snakemake.output.history,
    threads=snakemake.threads,
)
