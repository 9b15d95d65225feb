import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.studies.sampling import sampling_table

sampling_table(
    list(snakemake.input.runs),
    snakemake.input.subset,
    snakemake.params.study,
    snakemake.params.about,
    snakemake.output.csv,
    snakemake.output.md,
    snakemake.output.png,
)
