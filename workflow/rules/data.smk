rule fetch_dataset:
    output:
        manifest="data/raw/{dataset}/manifest.json",
    log:
        "logs/fetch_dataset/{dataset}.log",
    benchmark:
        "benchmarks/fetch_dataset/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        entry=plan.datasets.entry,
        cache_dir=subpath(output.manifest, parent=True),
    script:
        "../scripts/fetch_dataset.py"


rule prepare_dataset:
    input:
        plan.datasets.remote_manifest,
    output:
        volume="data/prepared/{dataset}/volume.tif",
        labels="data/prepared/{dataset}/labels.npz",
        acquisitions="data/prepared/{dataset}/acquisitions.npz",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    priority: 30  # short, and every training job waits for it: before any of them
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_digest("data", "tasks.image.data"),
        entry=plan.datasets.entry,
        seed=config["seed"],
    script:
        "../scripts/prepare_dataset.py"


rule make_pairs:
    input:
        volume="data/prepared/{dataset}/volume.tif",
        acquisitions="data/prepared/{dataset}/acquisitions.npz",
    output:
        train="data/pairs/{task}/{dataset}/train.npz",
        test="data/pairs/{task}/{dataset}/test.npz",
        calibration="data/pairs/{task}/{dataset}/calibration.npz",
    log:
        "logs/make_pairs/{task}/{dataset}.log",
    benchmark:
        "benchmarks/make_pairs/{task}/{dataset}.tsv"
    priority: 30  # short, and every training job waits for it: before any of them
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_digest("data", "tasks.image.data"),
        task=plan.image.task,
        split=config["split"],
        seed=plan.job_seed,
    script:
        "../scripts/make_pairs.py"
