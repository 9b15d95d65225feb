import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.transfer import figure, figure_inputs

transfer = snakemake.params.transfer
figure(figure_inputs(dict(snakemake.input.items())), snakemake.params.figure, transfer["source"], transfer["target"],
       snakemake.output[0])
