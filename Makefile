# The two front-door commands (see README): `make reproduce` runs the whole DAG on the embedded
# synthetic benchmark, `make test` runs the test suite. Both install the package first (a no-op
# when already installed), so they work on a fresh machine that has only Python.
PYTHON ?= python3
# torch is pinned explicitly so pip never resolves an unpinned torch (which pulls CUDA wheels).
TORCH_SPEC ?= torch==2.13.0
CORES ?= all

.PHONY: install test reproduce report lint clean-results

install:
	$(PYTHON) -m pip install --quiet "$(TORCH_SPEC)"
	$(PYTHON) -m pip install --quiet -e ".[dev,workflow]"

test: install
	$(PYTHON) -m pytest -q

reproduce: install
	$(PYTHON) -m snakemake --cores $(CORES) --workflow-profile workflow/profiles/default
	$(PYTHON) -m snakemake --cores $(CORES) --workflow-profile workflow/profiles/default --report results/report.html

lint: install
	$(PYTHON) -m snakemake --lint

clean-results:
	rm -rf results/runs results/tables results/plots results/data results/bench results/report.html logs checkpoints
