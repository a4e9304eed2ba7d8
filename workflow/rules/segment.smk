# The final segmentation network: DeepLabV3 trained on the mask store named by seg.labels (or on
# the GT train masks, `gt`), then multi-scale prediction on the val split.


rule ground_truth:
    input:
        code=stage_code("ground_truth"),
        prepared="data/prepared",
    output:
        store=directory("data/stores/gt"),
    params:
        values=stage_params("ground_truth"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/ground_truth.log",
    benchmark:
        "benchmarks/runs/ground_truth.tsv"
    shell:
        stage_shell("ground_truth")


rule train_seg:
    input:
        code=stage_code("train_seg"),
        prepared="data/prepared",
        labels=training_labels(),
    output:
        ckpt="data/models/seg.pt",
        curve="metrics/train_seg.csv",
    params:
        values=stage_params("train_seg"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/train_seg.log",
    benchmark:
        "benchmarks/runs/train_seg.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        stage_shell("train_seg")


rule predict:
    input:
        code=stage_code("predict"),
        prepared="data/prepared",
        ckpt="data/models/seg.pt",
    output:
        store=directory("data/stores/predict"),
        pngs=directory("data/predictions"),
    params:
        values=stage_params("predict"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/predict.log",
    benchmark:
        "benchmarks/runs/predict.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        stage_shell("predict")
