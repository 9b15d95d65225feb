import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.isotropic import isotropic_figure

methods, sampled = snakemake.params.methods, snakemake.params.sampled
isotropic_figure(
    snakemake.input.sections,
    snakemake.input.get("truth"),
    dict(zip(methods, snakemake.input.predictions)),
    dict(zip([m for m in methods if m in sampled], snakemake.input.uncertainties)),
    snakemake.params.z_factor,
    snakemake.wildcards.dataset,
    snakemake.output[0],
)
