# Transfer learning from one image pair (the paper's tissue transfer): the base tasks' models of
# transfer.source (domain A) are applied to transfer.target (domain B) directly, fine-tuned on ONE
# domain-B training pair, and compared with a fresh model trained on that pair with the same budget.
# Plan: emdiffuse/plan/transfer.py; logic: emdiffuse/tasks/transfer.py.


rule transfer_one_pair:
    input:
        train="data/pairs/{task}/{target}/train.npz",
    output:
        pair="data/pairs/transfer/{task}/{target}/one_pair.npz",
    log:
        "logs/transfer_one_pair/{task}/{target}.log",
    benchmark:
        "benchmarks/transfer_one_pair/{task}/{target}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("data", "tasks.transfer"),
        pair=lookup(dpath="transfer/pair", within=config, default=None),
        factor=plan.task_factor,
    script:
        "../scripts/transfer_one_pair.py"


rule transfer_test_pairs:
    input:
        test="data/pairs/{task}/{target}/test.npz",
    output:
        test="data/pairs/transfer/{task}/{target}/test.npz",
    log:
        "logs/transfer_test_pairs/{task}/{target}.log",
    benchmark:
        "benchmarks/transfer_test_pairs/{task}/{target}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("data", "tasks.transfer"),
        images=lookup(dpath="transfer/test_images", within=config, default=None),
        levels=lookup(dpath="transfer/test_levels", within=config, default=None),
    script:
        "../scripts/transfer_test_pairs.py"


# Inputs: the domain-A model and the one domain-B pair, nothing else.
rule transfer_finetune:
    input:
        model=plan.transfer.source_model,
        pairs="data/pairs/transfer/{task}/{target}/one_pair.npz",
    output:
        model="results/models/transfer/{task}/{target}/{method}_finetune/model.pt",
        history="results/models/transfer/{task}/{target}/{method}_finetune/history.csv",
    log:
        "logs/transfer_finetune/{task}/{target}/{method}.log",
    benchmark:
        "benchmarks/transfer_finetune/{task}/{target}/{method}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1  # CPU: two 1-thread jobs side by side train 1.75x faster than one 2-thread job; GPU profiles raise it
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=plan.gpus,
    params:
        code=code_digest("model", "tasks.transfer"),
        train=plan.transfer.finetune_train,
        seed=plan.job_seed,
        factor=plan.task_factor,
    script:
        "../scripts/transfer_finetune.py"


# The same pair and (by default) the same iterations, from fresh weights: what pre-training buys.
rule transfer_scratch:
    input:
        pairs="data/pairs/transfer/{task}/{target}/one_pair.npz",
    output:
        model="results/models/transfer/{task}/{target}/{method}_scratch/model.pt",
        history="results/models/transfer/{task}/{target}/{method}_scratch/history.csv",
    log:
        "logs/transfer_scratch/{task}/{target}/{method}.log",
    benchmark:
        "benchmarks/transfer_scratch/{task}/{target}/{method}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=plan.gpus,
    params:
        code=code_digest("model", "tasks.image.train_predict"),  # the generic train step on the one pair
        method="{method}",
        method_params=plan.transfer.scratch_params,
        seed=plan.job_seed,
        factor=plan.task_factor,
    script:
        "../scripts/train.py"


# One job per method predicts all its variants (one start-up; the same sampling seed for each).
rule transfer_predict:
    input:
        unpack(plan.transfer.variant_models),
        pairs="data/pairs/transfer/{task}/{target}/test.npz",
    output:
        **plan.transfer.variant_outputs(),
    log:
        "logs/transfer_predict/{task}/{target}/{method}.log",
    benchmark:
        "benchmarks/transfer_predict/{task}/{target}/{method}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=plan.gpus,
    params:
        code=code_digest("model", "tasks.image.train_predict"),  # the generic predict step on the variants
        seed=plan.transfer.predict_seed,
        settings=plan.predict_settings,
    script:
        "../scripts/transfer_predict.py"


# The non-learned input: its one reference row.
use rule transfer_predict as transfer_predict_reference with:
    output:
        **plan.transfer.reference_outputs(),
    log:
        "logs/transfer_predict_reference/{task}/{target}/{method}.log",
    benchmark:
        "benchmarks/transfer_predict/{task}/{target}/{method}.tsv"


# One job per task scores every method x variant (the metric networks are loaded once).
rule transfer_evaluate:
    input:
        pairs="data/pairs/transfer/{task}/{target}/test.npz",
        predictions=plan.transfer.task_prediction_files,
    output:
        metrics="results/metrics/transfer/{task}/{target}.csv",
    log:
        "logs/transfer_evaluate/{task}/{target}.log",
    benchmark:
        "benchmarks/transfer_evaluate/{task}/{target}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_digest("score", "tasks.transfer"),
        predictions=plan.transfer.task_predictions,
        metrics=lookup(dpath="transfer/metrics", within=config, default=None),
        threshold=config["reliability_threshold"],
    script:
        "../scripts/transfer_evaluate.py"


rule transfer_table:
    input:
        metrics=plan.transfer.metric_files,
        one_pairs=plan.transfer.one_pairs,
    output:
        csv=report(
            "results/tables/transfer.csv",
            caption="../report/transfer_table.rst",
            category="Tables",
            labels={"task": "transfer", "format": "csv"},
        ),
        md="results/tables/transfer.md",
    log:
        "logs/transfer_table.log",
    benchmark:
        "benchmarks/transfer_table/all.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("score", "tasks.transfer"),
        transfer=lookup(dpath="transfer", within=config, default=None),
        methods=plan.transfer.methods,
        budgets=plan.transfer.budgets,
    script:
        "../scripts/transfer_table.py"


rule transfer_figure:
    input:
        plan.transfer.figure_files,
    output:
        report(
            "results/figures/transfer.png",
            caption="../report/transfer_figure.rst",
            category="Figures",
            labels={"figure": "transfer"},
        ),
    log:
        "logs/transfer_figure.log",
    benchmark:
        "benchmarks/transfer_figure/all.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("plots", "tasks.transfer"),
        spec=plan.transfer.figure_spec,
        transfer=lookup(dpath="transfer", within=config, default=None),
        figure=config["figure"],
    script:
        "../scripts/transfer_figure.py"


# `snakemake --cores all table_transfer` builds the transfer table and its figure.
rule table_transfer:
    input:
        plan.transfer.outputs(),
    localrule: True
