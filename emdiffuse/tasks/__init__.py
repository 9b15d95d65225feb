"""The benchmark's tasks, one module per task and step: what a workflow script calls.

:mod:`.image` (denoise and super-resolution: pairs, train, predict, evaluate, tables),
:mod:`.isotropic` (vEMDiffuse and the volume baselines), :mod:`.segmentation` (the mIoU of
reconstructions), :mod:`.transfer` (one-pair fine-tuning), :mod:`.studies` (sampling study, loss
ablation) and :mod:`.blockwise` (restoring a large input in blocks).
"""
