# Scoring: every store the graph produces is evaluated against the GT of the train split.
# CAM stores are scored by a threshold sweep (evaluate_cam), the saliency store as a fg/bg mask at
# assemble.bg_saliency (evaluate_saliency), every other store by evaluate.

ruleorder: evaluate_cam > evaluate_saliency > evaluate


rule evaluate_cam:
    input:
        code=stage_code("evaluate_cam"),
        prepared="data/prepared",
        store=store_to_score,
    output:
        metrics="metrics/{store}.json",
        sweep="metrics/{store}_sweep.csv",
    params:
        values=stage_params("evaluate_cam"),
    wildcard_constraints:
        store=r"cam_r\d+",
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/evaluate_{store}.log",
    benchmark:
        "benchmarks/runs/evaluate_{store}.tsv"
    shell:
        stage_shell("evaluate_cam")


rule evaluate:
    input:
        code=stage_code("evaluate"),
        prepared="data/prepared",
        store=store_to_score,
    output:
        metrics="metrics/{store}.json",
    params:
        values=stage_params("evaluate"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/evaluate_{store}.log",
    benchmark:
        "benchmarks/runs/evaluate_{store}.tsv"
    shell:
        stage_shell("evaluate")


rule evaluate_saliency:
    input:
        code=stage_code("evaluate_saliency"),
        prepared="data/prepared",
        store=store_to_score,
    output:
        metrics="metrics/{store}.json",
    params:
        values=stage_params("evaluate_saliency"),
    wildcard_constraints:
        store="saliency",
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/evaluate_{store}.log",
    benchmark:
        "benchmarks/runs/evaluate_{store}.tsv"
    shell:
        stage_shell("evaluate_saliency")


rule report:
    input:
        code=stage_code("report"),
        prepared="data/prepared",
        stores=collected(config, "stores"),
        metrics=collected(config, "metrics"),
    output:
        html=report("reports/index.html", caption="../report/gallery.rst", category="Pseudo masks"),
    params:
        values=stage_params("report"),
    conda:
        "../envs/maskforge.yaml"
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/runs/report.tsv"
    shell:
        stage_shell("report")
