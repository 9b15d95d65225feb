import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.studies.sampling import sampling_run

sampling_run(
    snakemake.input.model,
    snakemake.input.subset,
    snakemake.wildcards.sampler,
    snakemake.params.study,
    snakemake.params.seed,
    snakemake.output.rows,
    task=snakemake.wildcards.task,
    dataset=snakemake.wildcards.dataset,
    threads=snakemake.threads,
    settings=snakemake.params.settings,
)
