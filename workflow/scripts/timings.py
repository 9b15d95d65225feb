import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image import timings

timings("benchmarks", snakemake.output[0])
