"""Denoising and super-resolution (EMDiffuse-n, EMDiffuse-r and the baselines), a module per stage so
that each rule's code digest covers what its job runs: :mod:`.data` (fetch, prepare, pairs),
:mod:`.train_predict`, :mod:`.scoring` (metrics, tables, calibration) and :mod:`.figures`."""
