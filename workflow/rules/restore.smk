# Block-wise restore of large stacks and volumes (config key `restore`, target `restore`; logic in
# emdiffuse/tasks/blockwise.py; plan: emdiffuse/plan/restore.py): each block is one job (one GPU on a cluster),
# gathered into one OME-Zarr.
rule restore_block:
    input:
        model=plan.restore.model,
        image=plan.restore.image,
    output:
        "results/restored/{name}/blocks/{block}.npz",
    log:
        "logs/restore_block/{name}/{block}.log",
    benchmark:
        "benchmarks/restore_block/{name}/{block}.tsv"
    wildcard_constraints:
        block=r"\d+",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    params:
        code=code_digest("model", "tasks.blockwise", "tasks.restore"),
        entry=plan.restore.entry,
        seed=config["seed"],
    script:
        "../scripts/restore_block.py"


rule restore_gather:
    input:
        blocks=plan.restore.blocks,
        model=plan.restore.model,
        image=plan.restore.image,
    output:
        prediction=directory("results/restored/{name}.zarr"),
        report="results/restored/{name}_reliability.json",
    log:
        "logs/restore_gather/{name}.log",
    benchmark:
        "benchmarks/restore_gather/{name}.tsv"
    conda:
        "../envs/torch.yaml"  # reads the model file's settings; OME-Zarr through ngff-zarr
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        code=code_digest("tasks.blockwise", "tasks.restore", "io"),
        threshold=config["reliability_threshold"],
    script:
        "../scripts/restore_gather.py"


rule restore:
    input:
        plan.restore.outputs(),
    localrule: True
