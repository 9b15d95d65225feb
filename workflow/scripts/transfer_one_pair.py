import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.transfer import extract_one_pair

extract_one_pair(snakemake.input.train, snakemake.params.pair, snakemake.params.factor, snakemake.output.pair)
