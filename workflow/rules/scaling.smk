# Scaling benchmark (`hieramamba bench scaling`: forward / forward+backward time and peak memory
# vs sequence length per backbone and mixer) and its log-log plot with fitted exponents.


rule bench_scaling:
    output:
        bench="results/bench/scaling.json",
    params:
        args=bench_args,
    log:
        "logs/bench/scaling.log",
    threads: 2
    resources:
        gpu=1 if CUDA else 0,
    conda:
        "../envs/hieramamba.yaml"
    shell:
        "hieramamba bench scaling --out {output.bench} {params.args} > {log} 2>&1"


rule plot_scaling:
    input:
        bench="results/bench/scaling.json",
    output:
        **plot_outputs("scaling", "results/plots/scaling.{ext}"),
        html=report(
            "results/tables/scaling_exponents.html",
            caption="../report/plot_scaling.rst",
            category=CATEGORY["scaling"],
            subcategory="all",
            labels={"dataset": "all", "plot": "fitted exponents", "format": "html"},
        ),
        csv=report(
            "results/tables/scaling_exponents.csv",
            caption="../report/plot_scaling.rst",
            category=CATEGORY["scaling"],
            subcategory="all",
            labels={"dataset": "all", "plot": "fitted exponents", "format": "csv"},
        ),
        md="results/tables/scaling_exponents.md",
        tex="results/tables/scaling_exponents.tex",
    log:
        "logs/plots/scaling.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/plot_scaling.py"
