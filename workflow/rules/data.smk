# Data: synthesize the embedded synthetic datasets in their real counterparts' released formats,
# then check every enabled dataset and write its data report (JSON + Markdown).


rule synth_data:
    output:
        directory("results/data/{dataset}"),
    params:
        like=synth_like,
        scale=SYNTH_SCALE[SCALE],
        seed=DATA_SEED,
    log:
        "logs/data/synth_{dataset}.log",
    conda:
        "../envs/hieramamba.yaml"
    shell:
        "hieramamba data synth --like {params.like} --scale {params.scale} "
        "--seed {params.seed} --out {output} > {log} 2>&1"


rule check_data:
    input:
        unpack(data_inputs),
    output:
        json="results/data/{dataset}.report.json",
        md=report(
            "results/data/{dataset}.report.md",
            caption="../report/data_report.rst",
            category="0. Data",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "item": "data report"},
        ),
    params:
        dataset=dataset_args,
    log:
        "logs/data/check_{dataset}.log",
    conda:
        "../envs/hieramamba.yaml"
    shell:
        "hieramamba data check {params.dataset} "
        "--report-json {output.json} --report-md {output.md} > {log} 2>&1"
