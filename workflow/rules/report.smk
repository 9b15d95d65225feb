rule table:
    input:
        metrics=plan.image.metric_files,
        models=plan.image.models,
    output:
        csv=report(
            "results/tables/{task}.csv",
            caption="../report/task_table.rst",
            category="Tables",
            labels={"task": "{task}", "format": "csv"},
        ),
        md="results/tables/{task}.md",
    log:
        "logs/table/{task}.log",
    benchmark:
        "benchmarks/table/{task}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("score", "tasks.image.scoring"),
        metrics=plan.image.metrics,
        methods=plan.image.methods,
        budgets=plan.image.budgets,
        budget=config["budget"],
        threshold=config["reliability_threshold"],
    script:
        "../scripts/table.py"


rule calibration:
    input:
        plan.image.metric_files,
    output:
        csv="results/tables/{task}_calibration.csv",
        md="results/tables/{task}_calibration.md",
        png=report(
            "results/figures/{task}_calibration.png",
            caption="../report/calibration.rst",
            category="Reliability",
            labels={"task": "{task}"},
        ),
    log:
        "logs/calibration/{task}.log",
    benchmark:
        "benchmarks/calibration/{task}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("score", "tasks.image.scoring"),
    script:
        "../scripts/calibration.py"


rule figure:
    input:
        predictions=plan.image.figure_predictions,
        pairs=plan.image.figure_pairs,
    output:
        report(
            "results/figures/{task}.png",
            caption="../report/task_figure.rst",
            category="Figures",
            labels={"task": "{task}"},
        ),
    log:
        "logs/figure/{task}.log",
    benchmark:
        "benchmarks/figure/{task}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("plots", "tasks.image.figures"),
        figure=config["figure"],
        datasets=plan.image.datasets,
        methods=plan.image.methods,
    script:
        "../scripts/figure.py"


rule phantom_figure:
    input:
        volumes=plan.datasets.phantom_volumes,
        reference=plan.datasets.reference_em,
    output:
        report(
            "results/figures/phantom.png",
            caption="../report/phantom.rst",
            category="Figures",
            labels={"figure": "phantom"},
        ),
    log:
        "logs/phantom_figure.log",
    benchmark:
        "benchmarks/phantom_figure/all.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("data", "plots", "tasks.image.figures"),  # reads the prepared volumes
    script:
        "../scripts/phantom_figure.py"


# How EM-like each dataset is: the phantoms beside the real volume and images (emdiffuse/evaluation/realism.py).
rule realism:
    input:
        volumes=plan.datasets.realism_volumes,
        reference=plan.datasets.reference_em,
    output:
        csv="results/tables/realism.csv",
        md="results/tables/realism.md",
        png=report(
            "results/figures/realism.png",
            caption="../report/realism.rst",
            category="Figures",
            labels={"figure": "realism"},
        ),
    log:
        "logs/realism.log",
    benchmark:
        "benchmarks/realism/all.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        code=code_digest("data", "score", "plots", "tasks.realism"),  # reads the prepared volumes
        datasets=plan.datasets.realism_datasets,
        kinds=plan.datasets.realism_kinds(),
    script:
        "../scripts/realism.py"


rule timings:
    input:
        plan.final_outputs(),
    output:
        report(
            "results/tables/timings.md",
            caption="../report/timings.rst",
            category="Timings",
            labels={"table": "stage timings"},
        ),
    log:
        "logs/timings.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_digest("reporting.timings", "reporting.markdown", "io"),
    script:
        "../scripts/timings.py"
