# Plots per dataset (PNG + PDF) into results/plots/: recall by video-length bin per variant,
# ablation bars (horizontal, whiskers from the table), training curves from each run's train_curve.csv.
# The scaling plot lives with its benchmark in scaling.smk.


# Recall by video length: per variant and length bin, mean over seeds with the tables' 95 %
# interval (Student t on seeds, video bootstrap) from each run's per-query hits.
rule plot_recall_by_length:
    input:
        metrics=dataset_metrics,
        hits=lambda wildcards: run_metrics(wildcards.dataset, path=hits_path),
        paper=config["paper_numbers"],
    output:
        **plot_outputs("recall_by_length", "results/plots/recall_by_length_{{dataset}}.{ext}"),
    params:
        plot="recall_by_length",
        dataset="{dataset}",
        paper_dataset=paper_dataset,
        variants=dataset_variants,
    log:
        "logs/plots/recall_by_length_{dataset}.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/plots.py"


# Bars and whiskers come from the ablation table's numbers (its interval columns when it has
# them, else ± std); the dots are the seeds of the runs.
use rule plot_recall_by_length as plot_ablation with:
    input:
        metrics=table_metrics("ablation"),
        paper=config["paper_numbers"],
        table="results/tables/ablation_{dataset}.csv",
    output:
        **plot_outputs("ablation", "results/plots/ablation_{{dataset}}.{ext}"),
    params:
        plot="ablation",
        variants=variants_of("ablation"),
    log:
        "logs/plots/ablation_{dataset}.log",


# train_curve.csv is read from each run folder beside its metrics.json (not a declared output of
# train, so a failed job never deletes a curve that a resumed run extends).
use rule plot_recall_by_length as plot_training_curves with:
    input:
        metrics=dataset_metrics,
        paper=config["paper_numbers"],
    output:
        **plot_outputs("training_curves", "results/plots/training_curves_{{dataset}}.{ext}"),
    params:
        plot="training_curves",
    log:
        "logs/plots/training_curves_{dataset}.log",
