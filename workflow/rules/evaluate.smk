rule evaluate:
    input:
        predictions=dataset_predictions,
        calibrations=dataset_calibrations,
        pairs="data/pairs/{task}/{dataset}/test.npz",
    output:
        metrics="results/metrics/{task}/{dataset}.csv",
    params:
        metrics=task_metrics,
        methods=task_methods,
    log:
        "logs/evaluate/{task}/{dataset}.log",
    benchmark:
        "benchmarks/evaluate/{task}/{dataset}.tsv"
    threads: 1  # one job per dataset, not per method: the metric imports (piq, LPIPS) cost ~5 s a job
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/evaluate.py"
