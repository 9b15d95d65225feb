# Quality versus sampling steps (config `sampling_study`): the trained EMDiffuse model of one
# task/dataset on a centre-cropped subset of its test set, every sampler x steps at one seed,
# timed in the job. `snakemake --cores 2 table_sampling`.


rule study_subset:
    input:
        pairs="data/pairs/{task}/{dataset}/test.npz",
    output:
        subset="data/pairs/{task}/{dataset}/test_{images}x{crop}.npz",
    log:
        "logs/study_subset/{task}/{dataset}/{images}x{crop}.log",
    benchmark:
        "benchmarks/study_subset/{task}/{dataset}/{images}x{crop}.tsv"
    wildcard_constraints:
        images=r"\d+",
        crop=r"\d+",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        code=code_digest("data", "models.patches", "tasks.studies.__init__"),
    script:
        "../scripts/study_subset.py"


rule sampling_run:
    input:
        model=plan.studies.sampling_model,
        subset=plan.studies.sampling_subset,
    output:
        rows="results/sampling/{task}/{dataset}/{sampler}.csv",
    log:
        "logs/sampling_run/{task}/{dataset}/{sampler}.log",
    benchmark:
        "benchmarks/sampling_run/{task}/{dataset}/{sampler}.tsv"
    wildcard_constraints:
        sampler="ancestral|ddim|dpmpp2m",
    conda:
        "../envs/torch.yaml"
    threads: 1  # the timings in the table are 1-thread timings
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    params:
        code=code_digest("model", "score", "tasks.studies.sampling"),
        study=plan.studies.sampling_params,
        settings=plan.studies.sampling_settings,
        seed=plan.studies.seed("sampling_study"),
    script:
        "../scripts/sampling_run.py"


rule sampling_table:
    input:
        runs=plan.studies.sampling_runs,
        subset=plan.studies.sampling_table_subset,
    output:
        csv="results/tables/sampling.csv",
        md="results/tables/sampling.md",
        png=report(
            "results/figures/sampling.png",
            caption="../report/sampling.rst",
            category="Sampling",
            labels={"figure": "quality versus steps"},
        ),
    log:
        "logs/sampling_table.log",
    benchmark:
        "benchmarks/sampling_table/all.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_digest("score", "plots", "tasks.studies.sampling"),
        study=plan.studies.sampling,
        about=plan.studies.sampling_about,
    script:
        "../scripts/sampling_table.py"


rule table_sampling:
    input:
        plan.studies.required("sampling_study"),
    localrule: True
