# `make demo` and `make test` work on a fresh machine: each makes .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# One BLAS/OpenMP thread per process: oversubscribing two cores makes SciPy many times slower.
# (One variable per line: make reads `export A=1 B=1` as A="1 B=1".) mor's own threads follow
# Numba's thread count, left at the core count.
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dask,torch]' -c constraints.txt
	# The inference engines tests/test_engines.py runs banks in (StripedHyena; Vortex, the Evo 2
	# engine), without their declared dependencies (stripedhyena's flash-attn does not install
	# on a CPU machine), and the packages their model modules import (constraints.txt pins them).
	$(BIN)/pip install --quiet --no-deps stripedhyena==0.2.2 vtx==1.1.0
	$(BIN)/pip install --quiet einops triton rich tqdm -c constraints.txt
	# Numba's kernels compiled once, into its cache (a minute): later runs load them.
	$(BIN)/mor warmup
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mor demo

# The layers contract ([tool.importlinter] in pyproject.toml, docs/architecture.md) first.
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_hankel.py
	$(BIN)/python benchmarks/bench_balanced.py
	$(BIN)/python benchmarks/bench_hankel_norm.py

# The API reference (mkdocs + mkdocstrings); the README is the front page. Fails on warnings.
docs: $(STAMP)
	$(BIN)/pip install --quiet -e '.[docs]'
	cp README.md docs/index.md
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
