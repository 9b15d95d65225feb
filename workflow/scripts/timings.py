import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.reporting.timings import write_timings

write_timings("benchmarks", snakemake.output[0])
