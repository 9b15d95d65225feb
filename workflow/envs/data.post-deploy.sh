#!/usr/bin/env bash
# Snakemake runs this inside the new env, from the workflow's working directory (the
# repository root): install the emdiffuse package itself without touching the env's deps.
set -euo pipefail
pip install --no-deps -e .
