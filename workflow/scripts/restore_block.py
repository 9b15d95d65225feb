import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.blockwise import restore_block

entry = snakemake.params.entry
restore_block(
    snakemake.input.model,
    snakemake.input.image,
    int(snakemake.wildcards.block),
    entry["blocks"],
    snakemake.output[0],
    seed=entry.get("seed", snakemake.params.seed),
    settings=entry.get("settings"),
    where=f"restore.{snakemake.wildcards.name}",
    threads=snakemake.threads,
)
