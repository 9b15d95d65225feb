rule evaluate:
    input:
        predictions=plan.image.predictions,
        calibrations=plan.image.calibrations,
        pairs="data/pairs/{task}/{dataset}/test.npz",
    output:
        metrics="results/metrics/{task}/{dataset}.csv",
    log:
        "logs/evaluate/{task}/{dataset}.log",
    benchmark:
        "benchmarks/evaluate/{task}/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1  # one job per dataset, not per method: the metric imports (piq, LPIPS) cost ~5 s a job
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_digest("score", "tasks.image.scoring"),
        metrics=plan.image.metrics,
        methods=plan.image.methods,
    script:
        "../scripts/evaluate.py"
