# maskforge: image-level labels -> pseudo masks. The stage table (src/maskforge_workflow/table.py) is
# the one description of the DAG: the rules are written from it (workflow/rules/stages.smk), dvc.yaml
# is generated from it, and a test checks both engines agree.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    input:
        final_targets(config),
    default_target: True
