import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.blockwise import gather

gather(
    snakemake.input.blocks,
    snakemake.input.model,
    snakemake.input.image,
    snakemake.output.prediction,
    threshold=snakemake.params.threshold,
)
