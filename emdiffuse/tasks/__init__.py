"""The benchmark's tasks, one module per task and step: what a workflow script (or the CLI) calls.

:mod:`.image` (denoise and super-resolution, a module per stage: pairs, train and predict, scores and
tables, figures), :mod:`.realism` (how EM-like the volumes are),
:mod:`.isotropic` (vEMDiffuse and the volume baselines), :mod:`.segmentation` (the mIoU of
reconstructions), :mod:`.transfer` (one-pair fine-tuning), :mod:`.studies` (sampling study, loss
ablation), :mod:`.restore` (a user's own images, ``emdiffuse predict``) and :mod:`.blockwise` (a large
input restored in blocks, one job each).
"""
