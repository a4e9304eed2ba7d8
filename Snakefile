# maskforge: image-level labels -> pseudo masks. The stage table (workflow/stages.py) is the one
# description of the DAG; dvc.yaml is generated from it and a test checks both engines agree.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/cam.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_targets(config),
    default_target: True
