# The two front-door commands (see README): `make reproduce` runs the whole DAG on the embedded
# synthetic benchmark, `make test` runs the test suite. Both install the package first (a no-op
# when already installed), so they work on a fresh machine that has only Python.
PYTHON ?= python3
# torch is pinned explicitly so pip never resolves an unpinned torch (which pulls CUDA wheels).
TORCH_SPEC ?= torch==2.13.0
CORES ?= all

.PHONY: install test reproduce report report-check lint clean-results clean-checkpoints parity

install:
	$(PYTHON) -m pip install --quiet "$(TORCH_SPEC)"
	$(PYTHON) -m pip install --quiet -e ".[dev,workflow]"

test: install
	$(PYTHON) -m pytest -q

# --report-after-run: the report is written by the same call, once the DAG has succeeded (not in
# the profile: there it would make `snakemake -n` write a report, and fail on missing outputs).
reproduce: install
	$(PYTHON) -m snakemake --cores $(CORES) --workflow-profile workflow/profiles/default --report results/report.html --report-after-run

report:
	$(PYTHON) -m snakemake --workflow-profile workflow/profiles/default --report results/report.html

# Opens results/report.html in headless Chromium (apt-get install chromium): every table and plot
# in results/ is in the report and renders; screenshots land in results/report-check/.
report-check:
	$(PYTHON) workflow/scripts/report_check.py results/report.html --out results/report-check

lint: install
	$(PYTHON) -m snakemake --lint

clean-results:
	rm -rf results/runs results/tables results/plots results/data results/bench results/report.html results/covers.json results/report-check logs checkpoints

# Checkpoints of finished runs (those with a metrics.json) go; unfinished runs keep theirs and resume.
clean-checkpoints:
	$(PYTHON) workflow/scripts/clean_checkpoints.py --checkpoints checkpoints --runs results/runs

# Our SSM kernels against mamba_ssm's (docs/parity.md). Without a GPU, Triton's interpreter runs
# mamba_ssm's Triton kernels on CPU: this installs triton and mamba_ssm's Python sources (its CUDA
# extension is skipped), unless an importable mamba_ssm is already there (a GPU machine).
MAMBA_SSM_SPEC ?= mamba-ssm==2.3.2.post1
TRITON_SPEC ?= triton>=3.8
parity: install
	$(PYTHON) -c "import mamba_ssm" 2>/dev/null || { \
	  $(PYTHON) -m pip install --quiet "$(TRITON_SPEC)" && \
	  MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE $(PYTHON) -m pip install --quiet --no-deps --no-build-isolation "$(MAMBA_SSM_SPEC)"; }
	$(PYTHON) -m hieramamba parity --json results/parity/parity.json
