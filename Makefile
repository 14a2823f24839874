# The two front-door commands (see README): `make reproduce` runs the whole DAG on the embedded
# synthetic benchmark, `make test` runs the test suite. Both install the package first (a no-op
# when already installed), so they work on a fresh machine that has only Python.
PYTHON ?= python3
# torch is pinned explicitly so pip never resolves an unpinned torch (which pulls CUDA wheels).
TORCH_SPEC ?= torch==2.13.0
CORES ?= all

.PHONY: install test reproduce report report-check lint clean-results clean-checkpoints parity gpu-wheels gpu-check

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
	rm -rf results/runs results/metrics results/tables results/plots results/data results/bench results/report.html results/covers.json results/report-check logs checkpoints

# Checkpoints of finished runs (those with a metrics.json) go; unfinished runs keep theirs and resume.
clean-checkpoints:
	$(PYTHON) workflow/scripts/clean_checkpoints.py --checkpoints checkpoints --runs results/runs

# Our SSM kernels against mamba_ssm's (docs/parity.md). Without a GPU, Triton's interpreter runs
# mamba_ssm's Triton kernels on CPU: this installs triton (>= 3.8) and einops, and mamba_ssm's
# Python sources (its CUDA extension skipped) unless a mamba_ssm is already installed.
MAMBA_SSM_SPEC ?= mamba-ssm==2.3.2.post1
TRITON_SPEC ?= triton>=3.8
# mamba-ssm goes in --no-deps (it declares tilelang, quack-kernels, transformers, ...: CUDA-side);
# of its dependencies the kernels compared here import only einops, installed beside triton.
# `import mamba_ssm` itself fails without the compiled extension, so the test is find_spec.
EINOPS_SPEC ?= einops>=0.7
parity: install
	$(PYTHON) -m pip install --quiet "$(TRITON_SPEC)" "$(EINOPS_SPEC)"
	$(PYTHON) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mamba_ssm') is None)" || \
	  MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE $(PYTHON) -m pip install --quiet --no-deps --no-build-isolation "$(MAMBA_SSM_SPEC)"
	$(PYTHON) -m hieramamba parity --json results/parity/parity.json

# The GPU check (docs/gpu.md). `make gpu-wheels` runs HERE (it needs the network): every wheel the
# check needs on the bare GPU machine (CPython 3.12, manylinux x86_64, torch/triton/numpy/h5py
# already there, no network), into the git-ignored gpu-wheels/ (about 1 MiB; the device copy
# limit is 64 MiB). mamba-ssm: its Python sources only (the Triton kernels; no CUDA build).
# antlr4-python3-runtime has only an sdist: built here into a pure-Python wheel.
GPU_WHEELS ?= gpu-wheels
GPU_PYTHON_VERSION ?= 3.12
GPU_WHEEL_SPECS ?= hydra-core==1.3.2 omegaconf==2.3.0 PyYAML==6.0.2 tqdm==4.67.1 einops==0.8.1 packaging==25.0 \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==0.30.0 attrs==26.1.0 \
  typing_extensions==4.15.0
gpu-wheels:
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON_VERSION) \
	  --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux_2_28_x86_64 -d $(GPU_WHEELS) $(GPU_WHEEL_SPECS)
	$(PYTHON) -m pip wheel --quiet --no-deps -w $(GPU_WHEELS) antlr4-python3-runtime==4.9.3
	MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE $(PYTHON) -m pip wheel --quiet --no-deps \
	  --no-build-isolation -w $(GPU_WHEELS) "$(MAMBA_SSM_SPEC)"
	$(PYTHON) -m pip wheel --quiet --no-deps -w $(GPU_WHEELS) .
	ls -l $(GPU_WHEELS) && du -sh $(GPU_WHEELS)

# On the GPU machine, from the repo root: installs from gpu-wheels/ what does not import (pip
# --no-index), then runs every step within ~8 minutes on one H100; writes results/gpu/gpu_check.{json,md}.
# No `install` prerequisite: that would pip-install the CPU torch pin over the machine's CUDA torch.
gpu-check:
	$(PYTHON) -m hieramamba gpu-check --wheels $(GPU_WHEELS)
