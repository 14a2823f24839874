# Evaluation. Each trained run (rule train's trained.json) is evaluated under its dataset's protocol
# by `hieramamba evaluate DIR`: the EMA weights of its last checkpoint, hits.csv.gz (per-query hits)
# then metrics.json last and atomically, the same files `hieramamba train` without --no-eval
# writes. This stage also adds the trivial baseline the main tables compare against (a fixed
# start/end prior fitted on the training split, `hieramamba evaluate --baseline prior`, written
# beside the first seed's `full` run as metrics.prior.json) and gathers every run into tidy CSVs
# (results/metrics/).


rule evaluate_run:
    input:
        trained="results/runs/{dataset}/{variant}/seed{seed}/trained.json",
    output:
        metrics="results/runs/{dataset}/{variant}/seed{seed}/metrics.json",
        hits="results/runs/{dataset}/{variant}/seed{seed}/hits.csv.gz",
    params:
        out=run_dir,
    log:
        "logs/evaluate/{dataset}/{variant}/seed{seed}.log",
    threads: 1
    resources:
        gpu=1 if CUDA else 0,
    conda:
        "../envs/hieramamba.yaml"
    shell:
        "hieramamba evaluate {params.out} > {log} 2>&1"


rule evaluate_prior:
    input:
        run="results/runs/{dataset}/full/seed{seed}/metrics.json",
    output:
        metrics="results/runs/{dataset}/full/seed{seed}/metrics.prior.json",
    params:
        out=run_dir,
    log:
        "logs/evaluate/prior_{dataset}_seed{seed}.log",
    conda:
        "../envs/hieramamba.yaml"
    shell:
        "hieramamba evaluate {params.out} --baseline prior > {log} 2>&1"


rule collect_metrics:
    input:
        metrics=run_metrics(),
    output:
        runs=report(
            "results/metrics/runs.csv",
            caption="../report/runs.rst",
            category="8. All runs",
            labels={"item": "one row per run"},
        ),
        bins="results/metrics/by_length_bin.csv",
        kinds="results/metrics/by_query_kind.csv",
    log:
        "logs/evaluate/collect_metrics.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/collect_metrics.py"
