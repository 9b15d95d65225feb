import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.isotropic import make_volume_pairs

out = snakemake.output
make_volume_pairs(
    snakemake.input.volume,
    snakemake.input.get("labels"),
    z_factor=snakemake.params.z_factor,
    test_sections=snakemake.params.test_sections,
    gap=snakemake.params.gap,
    test_crop=snakemake.params.test_crop,
    sections_path=out.sections,
    train_path=out.get("train"),
    train_labels_path=out.get("train_labels"),
    truth_path=out.get("truth"),
    truth_labels_path=out.get("truth_labels"),
)
