# Result tables per dataset (CSV numbers + Markdown + LaTeX + HTML for the report) into
# results/tables/: main (the paper's layout with its numbers and Δ; mean [95 % interval]),
# ablation (with its controls), stride sweep and backbone comparison; the last three from every
# run's per-query hits: mean [95 % interval], paired Δ to `full` [interval], P(improve),
# resolved, seeds needed, per query kind (workflow/scripts/stats.py). Which variants:
# ablations/*.yaml `tables:`.


rule table_main:
    input:
        metrics=table_metrics("main"),
        hits=table_metrics("main", hits_path),
        variants=table_variant_files("main"),
        paper=config["paper_numbers"],
        baseline=prior_metrics,
    output:
        **table_outputs("main"),
    params:
        table="main",
        dataset="{dataset}",
        paper_dataset=paper_dataset,
        synthetic=is_synthetic,
        variants=variants_of("main"),
        scale=SCALE,
    log:
        "logs/tables/main_{dataset}.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/tables.py"


use rule table_main as table_ablation with:
    input:
        metrics=table_metrics("ablation"),
        hits=table_metrics("ablation", hits_path),
        variants=table_variant_files("ablation"),
        paper=config["paper_numbers"],
    output:
        **table_outputs("ablation"),
    params:
        table="ablation",
        variants=variants_of("ablation"),
    log:
        "logs/tables/ablation_{dataset}.log",


use rule table_main as table_stride with:
    input:
        metrics=table_metrics("stride"),
        hits=table_metrics("stride", hits_path),
        variants=table_variant_files("stride"),
        paper=config["paper_numbers"],
    output:
        **table_outputs("stride"),
    params:
        table="stride",
        variants=variants_of("stride"),
    log:
        "logs/tables/stride_{dataset}.log",


use rule table_main as table_backbones with:
    input:
        metrics=table_metrics("backbones"),
        hits=table_metrics("backbones", hits_path),
        variants=table_variant_files("backbones"),
        paper=config["paper_numbers"],
    output:
        **table_outputs("backbones"),
    params:
        table="backbones",
        variants=variants_of("backbones"),
    log:
        "logs/tables/backbones_{dataset}.log",


# Has training reached its plateau? Per run, and per variant pooled over seeds, the change of the
# training loss over the last fifth of the iterations with its 95 % interval (falling / flat /
# rising), from each run's train_curve.csv beside its metrics.json (workflow/scripts/convergence.py).
rule table_convergence:
    input:
        metrics=dataset_metrics,
    output:
        **table_outputs("convergence"),
    params:
        dataset="{dataset}",
        variants=dataset_variants,
    log:
        "logs/tables/convergence_{dataset}.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/convergence.py"
