# Saliency, AE-PSL pseudo-mask assembly (S = F ∪ B) and dense-CRF refinement.


rule saliency:
    input:
        code=stage_code("saliency"),
        prepared="data/prepared",
    output:
        store=directory("data/stores/saliency"),
    params:
        values=stage_params("saliency"),
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
    log:
        "logs/crf_{source}.log",
    benchmark:
        "benchmarks/runs/crf_{source}.tsv"
    threads: config["crf"]["workers"]
    shell:
        stage_shell("crf")
