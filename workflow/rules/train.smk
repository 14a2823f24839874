# Train one (dataset, variant, seed). `hieramamba train --no-eval` trains (resuming from the run's
# checkpoints) and writes trained.json atomically once training is done; rule evaluate_run
# (evaluate.smk) then evaluates the run in a job of its own. Separate jobs let the short evaluations
# fill the cores while the last trainings run (one job per run left the last one alone on a core
# for minutes), and a lost metrics.json is re-scored without retraining. Only trained.json is a
# declared output: Snakemake deletes the declared outputs of failed jobs, and the checkpoints
# (outside the output, passed via params) must survive so a rerun resumes from them. The ablation
# file and the package's conf files the run is composed from are inputs, so editing one reruns
# exactly the runs that use it; then prepare_run.py starts those runs over instead of resuming
# from checkpoints of the old config.


rule train:
    input:
        unpack(train_data_inputs),
        ablation=f"{ABLATIONS_DIR}/{{variant}}.yaml",
        conf=run_conf_files,
    output:
        trained="results/runs/{dataset}/{variant}/seed{seed}/trained.json",
    params:
        dataset=dataset_args,
        scale=SCALE,
        device=DEVICE,
        out=run_dir,
        checkpoint_dir="checkpoints/{dataset}/{variant}/seed{seed}",
        prepare=f"{SCRIPTS_DIR}/prepare_run.py",
    log:
        "logs/train/{dataset}/{variant}/seed{seed}.log",
    threads: 1
    # every training before any evaluation: the short evaluation jobs then fill the cores beside
    # the last trainings instead of delaying them
    priority: 1
    resources:
        gpu=1 if CUDA else 0,
    conda:
        "../envs/hieramamba.yaml"
    shell:
        # plain `python` (not sys.executable): the interpreter's path must not be a param, or
        # `make reproduce` and `python -m snakemake` would see changed params and rerun everything
        "python {params.prepare} {params.out} {params.checkpoint_dir} --files {input.ablation} {input.conf} "
        "-- {params.dataset} scale={params.scale} seed={wildcards.seed} train.device={params.device} "
        "> {log} 2>&1 && "
        "hieramamba train --no-eval {params.dataset} scale={params.scale} seed={wildcards.seed} "
        "ablation={input.ablation} train.device={params.device} out={params.out} "
        "checkpoint_dir={params.checkpoint_dir} >> {log} 2>&1"
