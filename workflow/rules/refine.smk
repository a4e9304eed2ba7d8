# Saliency, AE-PSL pseudo-mask assembly (S = F ∪ B), dense-CRF refinement and IRN (IR labels,
# boundary branch, random walk).


rule saliency:
    input:
        code=stage_code("saliency"),
        prepared="data/prepared",
    output:
        store=directory("data/stores/saliency"),
    params:
        values=stage_params("saliency"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/saliency.log",
    benchmark:
        "benchmarks/runs/saliency.tsv"
    shell:
        stage_shell("saliency")


rule assemble_ae:
    input:
        code=stage_code("assemble_ae"),
        regions=last_regions(),
        saliency="data/stores/saliency",
    output:
        store=directory("data/stores/assemble_ae"),
        ignored="metrics/assemble_ae_ignored.json",
    params:
        values=stage_params("assemble_ae"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/assemble_ae.log",
    benchmark:
        "benchmarks/runs/assemble_ae.tsv"
    shell:
        stage_shell("assemble_ae")


rule crf:
    input:
        code=stage_code("crf"),
        prepared="data/prepared",
        masks="data/stores/{source}",
    output:
        store=directory("data/stores/{source}_crf"),
    params:
        values=stage_params("crf"),
    wildcard_constraints:
        source="|".join(STAGES["crf"].sources),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/crf_{source}.log",
    benchmark:
        "benchmarks/runs/crf_{source}.tsv"
    threads: config["crf"]["workers"]
    shell:
        stage_shell("crf")


rule ir_labels:
    input:
        code=stage_code("ir_labels"),
        prepared="data/prepared",
        cams=round0_cams(),
    output:
        store=directory("data/stores/ir_labels"),
    params:
        values=stage_params("ir_labels"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/ir_labels.log",
    benchmark:
        "benchmarks/runs/ir_labels.tsv"
    threads: config["crf"]["workers"]
    shell:
        stage_shell("ir_labels")


rule train_irn:
    input:
        code=stage_code("train_irn"),
        prepared="data/prepared",
        labels="data/stores/ir_labels",
    output:
        ckpt="data/models/irn.pt",
        curve="metrics/train_irn.csv",
    params:
        values=stage_params("train_irn"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/train_irn.log",
    benchmark:
        "benchmarks/runs/train_irn.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        stage_shell("train_irn")


rule refine_irn:
    input:
        code=stage_code("refine_irn"),
        prepared="data/prepared",
        ckpt="data/models/irn.pt",
        cams=round0_cams(),
    output:
        store=directory("data/stores/irn"),
    params:
        values=stage_params("refine_irn"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/refine_irn.log",
    benchmark:
        "benchmarks/runs/refine_irn.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        stage_shell("refine_irn")
