rule train:
    input:
        pairs="data/pairs/{task}/{dataset}/train.npz",
    output:
        model="results/models/{task}/{dataset}/{method}/model.pt",
        history="results/models/{task}/{dataset}/{method}/history.csv",
    log:
        "logs/train/{task}/{dataset}/{method}.log",
    benchmark:
        "benchmarks/train/{task}/{dataset}/{method}.tsv"
    priority: plan.image.train_priority  # the longest jobs, and the transfer and sampling studies wait for them: start them first
    conda:
        "../envs/torch.yaml"
    threads: 1  # CPU: two 1-thread jobs side by side train 1.75x faster than one 2-thread job; GPU profiles raise it
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=plan.train_gpus,
    params:
        code=code_digest("model", "tasks.image.train_predict"),
        method="{method}",
        method_params=plan.method_params,
        seed=plan.job_seed,
        factor=plan.task_factor,
    script:
        "../scripts/train.py"


rule predict:
    input:
        model="results/models/{task}/{dataset}/{method}/model.pt",
        pairs="data/pairs/{task}/{dataset}/test.npz",
        calibration_pairs="data/pairs/{task}/{dataset}/calibration.npz",
    output:
        predictions="results/predictions/{task}/{dataset}/{method}/test.npz",
        calibration="results/predictions/{task}/{dataset}/{method}/calibration.npz",
    log:
        "logs/predict/{task}/{dataset}/{method}.log",
    benchmark:
        "benchmarks/predict/{task}/{dataset}/{method}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1  # CPU: two 1-thread jobs side by side train 1.75x faster than one 2-thread job; GPU profiles raise it
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=plan.gpus,
    params:
        code=code_digest("model", "tasks.image.train_predict"),
        seed=plan.job_seed,
        settings=plan.predict_settings,
    script:
        "../scripts/predict.py"
