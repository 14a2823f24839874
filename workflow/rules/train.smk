# Train + evaluate one (dataset, variant, seed). `hieramamba train` trains, evaluates under the
# dataset's protocol and writes hits.csv.gz (per-query hits) then metrics.json atomically (last),
# so a crashed or killed job never leaves a metrics.json behind. Only those two are declared
# outputs: Snakemake deletes the declared outputs of failed jobs, and the checkpoints (outside the output, passed via params)
# must survive so a rerun resumes from them. The ablation file and the package's conf files the
# run is composed from are inputs, so editing one reruns exactly the runs that use it; then
# prepare_run.py starts those runs over instead of resuming from checkpoints of the old config.


rule train:
    input:
        unpack(train_data_inputs),
        ablation=f"{ABLATIONS_DIR}/{{variant}}.yaml",
        conf=run_conf_files,
    output:
        metrics="results/runs/{dataset}/{variant}/seed{seed}/metrics.json",
        hits="results/runs/{dataset}/{variant}/seed{seed}/hits.csv.gz",
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
        "hieramamba train {params.dataset} scale={params.scale} seed={wildcards.seed} "
        "ablation={input.ablation} train.device={params.device} out={params.out} "
        "checkpoint_dir={params.checkpoint_dir} >> {log} 2>&1"
