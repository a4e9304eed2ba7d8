# Dataset preparation, CAM training/inference and AE-PSL's adversarial-erasing rounds.


rule prepare:
    input:
        code=stage_code("prepare"),
    output:
        prepared=directory("data/prepared"),
    params:
        values=stage_params("prepare"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/prepare.log",
    benchmark:
        "benchmarks/runs/prepare.tsv"
    shell:
        stage_shell("prepare")


rule train_cam:
    input:
        code=stage_code("train_cam"),
        prepared="data/prepared",
        regions=previous_regions,
    output:
        ckpt="data/models/cam_r{round}.pt",
        curve="metrics/train_cam_r{round}.csv",
    params:
        values=stage_params("train_cam"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/train_cam_r{round}.log",
    benchmark:
        "benchmarks/runs/train_cam_r{round}.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        stage_shell("train_cam")


rule make_cam:
    input:
        code=stage_code("make_cam"),
        prepared="data/prepared",
        ckpt="data/models/cam_r{round}.pt",
        regions=previous_regions,
    output:
        store=directory(cam_store_output()),
    params:
        values=stage_params("make_cam"),
    conda:
        "../envs/maskforge.yaml"
    log:
        f"logs/make_cam_r{{round}}{part_suffix()}.log",
    benchmark:
        f"benchmarks/runs/make_cam_r{{round}}{part_suffix()}.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        stage_shell("make_cam")


rule erase:
    input:
        code=stage_code("erase"),
        cams=cams_of_round,
        regions=previous_regions,
    output:
        store=directory("data/stores/regions_r{round}"),
    params:
        values=stage_params("erase"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/erase_r{round}.log",
    benchmark:
        "benchmarks/runs/erase_r{round}.tsv"
    shell:
        stage_shell("erase")


rule seeds:
    input:
        code=stage_code("seeds"),
        cams=round0_cams(),
    output:
        store=directory("data/stores/seeds"),
    params:
        values=stage_params("seeds"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/seeds.log",
    benchmark:
        "benchmarks/runs/seeds.tsv"
    shell:
        stage_shell("seeds")
