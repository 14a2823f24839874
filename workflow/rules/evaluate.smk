# Evaluation. Each run is evaluated by `hieramamba train` itself (rule train), which writes
# metrics.json last and atomically under the dataset's protocol. This stage adds the trivial
# baseline the main tables compare against (a fixed start/end prior fitted on the training split,
# `hieramamba evaluate --baseline prior`, written beside the first seed's `full` run as
# metrics.prior.json) and gathers every run into tidy CSVs (results/metrics/).


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
