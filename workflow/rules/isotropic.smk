# Isotropic volume reconstruction (vEMDiffuse-i/-a and baselines) and its segmentation mIoU.
# Plan: emdiffuse/plan/isotropic.py; logic: emdiffuse/tasks/isotropic.py, emdiffuse/tasks/segmentation.py.


rule make_volume_pairs:
    input:
        volume="data/prepared/{dataset}/volume.tif",
        labels="data/prepared/{dataset}/labels.npz",
    output:
        train="data/pairs/isotropic/{dataset}/train_volume.tif",
        train_labels="data/pairs/isotropic/{dataset}/train_labels.npz",
        sections="data/pairs/isotropic/{dataset}/test_sections.tif",
        truth="data/pairs/isotropic/{dataset}/test_truth.tif",
        truth_labels="data/pairs/isotropic/{dataset}/test_labels.npz",
    log:
        "logs/make_volume_pairs/{dataset}.log",
    benchmark:
        "benchmarks/make_volume_pairs/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(plan.iso.scored),
    priority: 30  # short, and every training job waits for it: before any of them
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_digest("data", "tasks.isotropic"),
        test_sections=plan.iso.test_sections,
        test_crop=plan.iso.test_crop,
        gap=config["split"]["gap"],
        z_factor=plan.iso.z_factor,
    script:
        "../scripts/make_volume_pairs.py"


# Serial-section data (anisotropic voxels): its sections are the test input; no ground truth.
rule make_volume_sections:
    input:
        volume="data/prepared/{dataset}/volume.tif",
    output:
        sections="data/pairs/isotropic/{dataset}/test_sections.tif",
    log:
        "logs/make_volume_sections/{dataset}.log",
    benchmark:
        "benchmarks/make_volume_sections/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(plan.iso.sections_only),
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_digest("data", "tasks.isotropic"),
        test_sections=plan.iso.test_sections,
        test_crop=plan.iso.test_crop,
        gap=config["split"]["gap"],
        z_factor=plan.iso.z_factor,
    script:
        "../scripts/make_volume_pairs.py"


# One training file per method: the isotropic training volume, or for vEMDiffuse-a ONLY the
# anisotropic test sections (self-supervised on the volume it reconstructs, as in the paper).
# Interpolation is not learned and has no training job.
rule train_volume:
    input:
        volume=plan.iso.training_file,
    output:
        model="results/models/isotropic/{dataset}/{method}/model.pt",
        history="results/models/isotropic/{dataset}/{method}/history.csv",
    log:
        "logs/train_volume/{dataset}/{method}.log",
    benchmark:
        "benchmarks/train_volume/{dataset}/{method}.tsv"
    wildcard_constraints:
        method=alternatives(plan.iso.learned),
    priority: 10  # long jobs (vEMDiffuse): early, after EMDiffuse's
    conda:
        "../envs/torch.yaml"
    threads: 1  # CPU: two 1-thread jobs side by side beat one 2-thread job; GPU profiles raise it
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=plan.train_gpus,
    params:
        code=code_digest("model", "tasks.isotropic"),
        method_params=plan.iso.train_params,
        z_factor=plan.iso.z_factor,
        seed=plan.job_seed,
    script:
        "../scripts/train_volume.py"


rule predict_volume:
    input:
        unpack(plan.iso.predict_inputs),
    output:
        prediction="results/predictions/isotropic/{dataset}/{method}/test.tif",
    log:
        "logs/predict_volume/{dataset}/{method}.log",
    benchmark:
        "benchmarks/predict_volume/{dataset}/{method}.tsv"
    wildcard_constraints:
        method=alternatives(plan.iso.unsampled),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=plan.iso.predict_gpus,  # interpolation needs none
    params:
        code=code_digest("model", "tasks.isotropic"),
        method_params=plan.iso.predict_params,
        z_factor=plan.iso.z_factor,
        seed=plan.job_seed,
    script:
        "../scripts/predict_volume.py"


# Methods drawing K > 1 samples also write the per-voxel std of the samples.
use rule predict_volume as predict_volume_sampled with:
    output:
        prediction="results/predictions/isotropic/{dataset}/{method}/test.tif",
        uncertainty="results/predictions/isotropic/{dataset}/{method}/test_uncertainty.tif",
    log:
        "logs/predict_volume_sampled/{dataset}/{method}.log",
    benchmark:
        "benchmarks/predict_volume/{dataset}/{method}.tsv"
    wildcard_constraints:
        method=alternatives(plan.iso.sampled),


rule evaluate_volume:  # one job per dataset: the metric imports cost more than scoring a volume
    input:
        unpack(plan.iso.evaluate_inputs),
    output:
        metrics="results/metrics/isotropic/{dataset}.csv",
    log:
        "logs/evaluate_volume/{dataset}.log",
    benchmark:
        "benchmarks/evaluate_volume/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_digest("score", "tasks.isotropic"),
        methods=plan.iso.methods_of,
        sampled=plan.iso.sampled_methods,
        metrics=plan.iso.metrics,
        planes_per_view=plan.iso.planes_per_view,
        threshold=config["reliability_threshold"],
    script:
        "../scripts/evaluate_volume.py"


rule isotropic_table:
    input:
        plan.iso.metric_files,
    output:
        csv=report(
            "results/tables/isotropic.csv",
            caption="../report/isotropic_table.rst",
            category="Tables",
            labels={"task": "isotropic", "format": "csv"},
        ),
        md="results/tables/isotropic.md",
    log:
        "logs/isotropic_table.log",
    benchmark:
        "benchmarks/isotropic_table/all.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("score", "tasks.isotropic"),
        metrics=plan.iso.metrics,
        methods=plan.iso.methods,
        budgets=plan.iso.budgets,
        factors=plan.iso.factors,
        unscored=plan.iso.unscored,
        threshold=config["reliability_threshold"],
    script:
        "../scripts/isotropic_table.py"


rule isotropic_figure:
    input:
        unpack(plan.iso.figure_inputs),
    output:
        report(
            "results/figures/isotropic_{dataset}.png",
            caption="../report/isotropic_figure.rst",
            category="Figures",
            labels={"task": "isotropic", "dataset": "{dataset}"},
        ),
    log:
        "logs/isotropic_figure/{dataset}.log",
    benchmark:
        "benchmarks/isotropic_figure/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(plan.iso.datasets),  # not isotropic_mito3d.png
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("plots", "tasks.isotropic"),
        methods=plan.iso.methods_of,
        sampled=plan.iso.sampled,
        z_factor=plan.iso.z_factor,
    script:
        "../scripts/isotropic_figure.py"


# Segmentation mIoU: a segmenter trained on the isotropic TRAINING volume and its labels, frozen.
rule train_segmenter:
    input:
        volume="data/pairs/isotropic/{dataset}/train_volume.tif",
        labels="data/pairs/isotropic/{dataset}/train_labels.npz",
    output:
        model="results/models/segmentation/{dataset}/segmenter.pt",
        history="results/models/segmentation/{dataset}/history.csv",
    log:
        "logs/train_segmenter/{dataset}.log",
    benchmark:
        "benchmarks/train_segmenter/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(plan.iso.segmented),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=1,
    params:
        code=code_digest("model", "tasks.segmentation"),
        segmentation=plan.iso.segmentation,
        seed=plan.job_seed,
    script:
        "../scripts/train_segmenter.py"


rule segment_volumes:
    input:
        predictions=plan.iso.segment_predictions,
        segmenter="results/models/segmentation/{dataset}/segmenter.pt",
        truth="data/pairs/isotropic/{dataset}/test_truth.tif",
        labels="data/pairs/isotropic/{dataset}/test_labels.npz",
        sections="data/pairs/isotropic/{dataset}/test_sections.tif",
    output:
        scores="results/segmentation/{dataset}/iou.csv",
        masks="results/segmentation/{dataset}/classes.npz",
    log:
        "logs/segment_volumes/{dataset}.log",
    benchmark:
        "benchmarks/segment_volumes/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(plan.iso.segmented),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    params:
        code=code_digest("model", "tasks.segmentation"),
        methods=plan.iso.methods_of,
        z_factor=plan.iso.z_factor,
    script:
        "../scripts/segment_volumes.py"


rule segmentation_table:
    input:
        plan.iso.segmentation_scores,
    output:
        csv=report(
            "results/tables/segmentation.csv",
            caption="../report/segmentation_table.rst",
            category="Tables",
            labels={"task": "isotropic segmentation", "format": "csv"},
        ),
        md="results/tables/segmentation.md",
    log:
        "logs/segmentation_table.log",
    benchmark:
        "benchmarks/segmentation_table/all.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("score", "tasks.segmentation"),
        classes=plan.iso.classes,
    script:
        "../scripts/segmentation_table.py"


rule mito3d_figure:
    input:
        unpack(plan.iso.render_inputs),
    output:
        report(
            "results/figures/isotropic_mito3d.png",
            caption="../report/mito3d.rst",
            category="Figures",
            labels={"task": "isotropic segmentation"},
        ),
    log:
        "logs/mito3d_figure.log",
    benchmark:
        "benchmarks/mito3d_figure/all.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("plots", "tasks.segmentation"),
        render_class=plan.iso.render_class,
    script:
        "../scripts/mito3d_figure.py"
