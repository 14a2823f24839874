"""Parity of our pure-PyTorch kernels with mamba_ssm's (``hieramamba parity``).

``upstream`` imports mamba_ssm's kernels (on CUDA, or through Triton's interpreter on CPU),
``checks`` compares outputs and gradients, ``cli`` runs a plan of checks and writes a JSON report.
"""
