# `make demo` and `make test` do all the set-up on a fresh machine (2 CPU cores, no GPU needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ddad-installed

.PHONY: setup demo test test-slow check-cuda clean

setup: $(STAMP)

# --system-site-packages keeps a CUDA torch the machine already has; torch==2.13.0 (CPU wheel on
# our machines) is installed only where no torch imports.
$(STAMP): setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*)
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "setuptools>=64" wheel
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	touch $@

demo: $(STAMP)
	$(VENV)/bin/ddad demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

# Statistical checks that take minutes (e.g. fast vs eager final accuracy over seeds).
test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# The GPU path without a GPU: the CUDA build (sm_90), its kernels' registers and spills, the Triton
# kernels compiled ahead of time for sm_90, the fast step traced on fake CUDA tensors. Keeps a
# venv with a CUDA torch under ~/.cache/ddad_fast (bench/check_cuda.sh).
check-cuda:
	PYTHON=$(PYTHON) bash bench/check_cuda.sh

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache .ruff_cache
