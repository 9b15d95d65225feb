# The paper's difficulty-aware loss on and off (config `loss_ablation`): EMDiffuse trained twice
# at the same reduced budget and seed, predicted and scored alike. `snakemake --cores 2 table_loss_ablation`.


rule loss_ablation_train:
    input:
        pairs="data/pairs/{task}/{dataset}/train.npz",
    output:
        model="results/loss_ablation/{task}/{dataset}/loss_{variant}/model.pt",
        history="results/loss_ablation/{task}/{dataset}/loss_{variant}/history.csv",
    log:
        "logs/loss_ablation_train/{task}/{dataset}/{variant}.log",
    benchmark:
        "benchmarks/loss_ablation_train/{task}/{dataset}/{variant}.tsv"
    wildcard_constraints:
        variant="on|off",
    conda:
        "../envs/torch.yaml"
    threads: 1  # as rule train
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    params:
        code=code_digest("model", "tasks.image.train_predict"),  # the train/predict scripts; the variant is in method_params
        method="emdiffuse",
        method_params=plan.studies.ablation_method_params,
        seed=plan.studies.seed("loss_ablation"),
        factor=plan.task_factor,
    script:
        "../scripts/train.py"


rule loss_ablation_predict:
    input:
        model="results/loss_ablation/{task}/{dataset}/loss_{variant}/model.pt",
        pairs=plan.studies.ablation_subset,
    output:
        predictions="results/loss_ablation/{task}/{dataset}/loss_{variant}/test.npz",
    log:
        "logs/loss_ablation_predict/{task}/{dataset}/{variant}.log",
    benchmark:
        "benchmarks/loss_ablation_predict/{task}/{dataset}/{variant}.tsv"
    wildcard_constraints:
        variant="on|off",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        code=code_digest("model", "tasks.image.train_predict"),  # the train/predict scripts; the variant is in method_params
        seed=plan.studies.seed("loss_ablation"),
        settings=plan.studies.ablation_predict_settings,
    script:
        "../scripts/predict.py"


rule loss_ablation_table:
    input:
        unpack(plan.studies.ablation_inputs),
    output:
        csv=report(
            "results/tables/loss_ablation.csv",
            caption="../report/loss_ablation.rst",
            category="Tables",
            labels={"task": "loss ablation", "format": "csv"},
        ),
        md="results/tables/loss_ablation.md",
    log:
        "logs/loss_ablation_table.log",
    benchmark:
        "benchmarks/loss_ablation_table/all.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        code=code_digest("score", "tasks.studies.loss_ablation"),
        metrics=plan.studies.ablation_metrics,
        budget=plan.studies.ablation_budget,
        about=plan.studies.ablation_about,
        threshold=config["reliability_threshold"],
    script:
        "../scripts/loss_ablation_table.py"


rule table_loss_ablation:
    input:
        plan.studies.required("loss_ablation"),
    localrule: True
