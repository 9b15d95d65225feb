rule fetch_dataset:
    output:
        manifest="data/raw/{dataset}/manifest.json",
    params:
        entry=dataset_entry,
        cache_dir=subpath(output.manifest, parent=True),
    log:
        "logs/fetch_dataset/{dataset}.log",
    benchmark:
        "benchmarks/fetch_dataset/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/fetch_dataset.py"


rule prepare_dataset:
    input:
        remote_manifest,
    output:
        volume="data/prepared/{dataset}/volume.tif",
        labels="data/prepared/{dataset}/labels.npz",
        acquisitions="data/prepared/{dataset}/acquisitions.npz",
    params:
        entry=dataset_entry,
        seed=config["seed"],
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    threads: 1
    priority: 30  # short, and every training job waits for it: before any of them
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/data.yaml"
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
    params:
        task=task_entry,
        split=config["split"],
        seed=job_seed,
    log:
        "logs/make_pairs/{task}/{dataset}.log",
    benchmark:
        "benchmarks/make_pairs/{task}/{dataset}.tsv"
    threads: 1
    priority: 30  # short, and every training job waits for it: before any of them
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/make_pairs.py"
