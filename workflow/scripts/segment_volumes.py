import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.segmentation import segment_volumes

segment_volumes(
    snakemake.wildcards.dataset,
    snakemake.input.segmenter,
    snakemake.input.truth,
    snakemake.input.labels,
    snakemake.input.sections,
    dict(zip(snakemake.params.methods, snakemake.input.predictions)),
    snakemake.params.z_factor,
    snakemake.output.scores,
    snakemake.output.masks,
    threads=snakemake.threads,
)
