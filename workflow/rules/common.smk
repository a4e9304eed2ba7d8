# Config validation first, then the helpers every rule uses. All of them read the stage table.
import sys

sys.path.insert(0, workflow.basedir)  # the stage table and stage modules live beside the Snakefile

from snakemake.utils import validate

from workflow.stages import STAGES, STORES, final_targets, code_files, params_json, shell_command

validate(config, "../schemas/params.schema.yaml")


wildcard_constraints:
    round=r"\d+",
    store=r"[A-Za-z0-9_]+",


def stage_code(name):
    """The stage module and the core modules it imports: editing any reruns the stage."""
    return code_files(STAGES[name])


def stage_params(name):
    """The stage's params keys as one canonical JSON value (any change or swap reruns it)."""
    return params_json(STAGES[name], config)


def stage_shell(name):
    return shell_command(STAGES[name])


def last_regions():
    """The regions mined over all AE rounds: the last round's accumulated store."""
    return f"{STORES}/regions_r{config['ae']['rounds'] - 1}"


def previous_regions(wildcards):
    """AE round r reads the regions mined up to round r-1; round 0 reads none."""
    r = int(wildcards.round)
    return [f"{STORES}/regions_r{r - 1}"] if r > 0 else []
