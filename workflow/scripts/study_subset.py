import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.studies import make_subset

make_subset(
    snakemake.input.pairs,
    int(snakemake.wildcards.images),
    int(snakemake.wildcards.crop),
    snakemake.output.subset,
)
