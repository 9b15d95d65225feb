rule evaluate:
    input:
        predictions="results/predictions/{task}/{dataset}/{method}/test.npz",
        pairs="data/pairs/{task}/{dataset}/test.npz",
    output:
        metrics="results/metrics/{task}/{dataset}/{method}.csv",
    params:
        metrics=task_metrics,
        threshold=config["reliability_threshold"],
    log:
        "logs/evaluate/{task}/{dataset}/{method}.log",
    benchmark:
        "benchmarks/evaluate/{task}/{dataset}/{method}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/evaluate.py"
