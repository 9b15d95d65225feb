import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.data import make_pairs

make_pairs(
    snakemake.wildcards.task,
    snakemake.params.task,
    snakemake.params.split,
    snakemake.input.volume,
    snakemake.params.seed,
    snakemake.output.train,
    snakemake.output.test,
    snakemake.output.calibration,
    acquisitions_path=snakemake.input.acquisitions,
)
