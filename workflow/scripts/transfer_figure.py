import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.transfer import figure

transfer = snakemake.params.transfer
figure(snakemake.params.spec, snakemake.params.figure, transfer["source"], transfer["target"], snakemake.output[0])
