# HieraMamba reproducibility suite: every table and plot from one command.
#
#   snakemake --cores all                                  # the whole DAG (synthetic default)
#   snakemake --cores all --report results/report.html     # the HTML report
#   snakemake --cores all --config scale=smoke seeds=1     # the CI-sized run
#
# DAG: data (synthesize / check) -> train + evaluate per (dataset, variant, seed) -> tables ->
# plots -> report. Variants are the files in ablations/*.yaml; see docs/workflow.md.

from snakemake.utils import min_version

min_version("9.0")


# ---- configuration ---------------------------------------------------------------------------

configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# ---- rules ---------------------------------------------------------------------------------------

# Declared before the rules: Snakemake attaches global constraints when a rule is defined.
wildcard_constraints:
    dataset="|".join(config["datasets"]),
    variant="[a-z0-9][a-z0-9_]*",
    seed=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/covers.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/scaling.smk"


# Record which scale and seeds results/ now holds (only when jobs run: not for -n or --report).
onstart:
    write_covers()


# ---- target ----------------------------------------------------------------------------------------


localrules:
    all,


rule all:
    default_target: True
    input:
        get_final_output(),
