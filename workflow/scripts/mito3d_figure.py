import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from emdiffuse.tasks.segmentation import mito3d_figure

mito3d_figure(snakemake.input.masks, snakemake.input.scores, snakemake.output[0],
              render_class=snakemake.params.render_class)
