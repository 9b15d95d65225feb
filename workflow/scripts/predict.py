import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.image.train_predict import predict

# The test pairs, and the held-out calibration pairs where the rule asks for their predictions.
jobs = [(snakemake.input.pairs, snakemake.output.predictions)]
if "calibration" in snakemake.output.keys():
    jobs.append((snakemake.input.calibration_pairs, snakemake.output.calibration))
predict(
    [snakemake.input.model] * len(jobs),
    [pairs for pairs, _ in jobs],
    snakemake.params.seed,
    [out for _, out in jobs],
    threads=snakemake.threads,
    settings=snakemake.params.settings,  # the config's prediction settings, over the model file's
)
