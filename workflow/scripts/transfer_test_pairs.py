import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.transfer import extract_test_subset

extract_test_subset(snakemake.input.test, snakemake.params.images, snakemake.params.levels, snakemake.output.test)
