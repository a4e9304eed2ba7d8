# Config validation first, then the helpers every rule uses. All of them read the stage table.
import sys

# The checkout's own code: the workflow package (stage table, hand-over) and the stage modules.
sys.path[:0] = [f"{workflow.basedir}/src", workflow.basedir]

from snakemake.utils import validate

from maskforge_workflow.handover import guard_snakemake, record_for_dvc
from maskforge_workflow.graph import (STAGES, STORES, code_files, collected, final_targets, params_json, shell_command,
                             store_paths)
from maskforge.files import part_name

validate(config, "../schemas/params.schema.yaml")

# Outputs that DVC (or anything else) wrote are not trusted by mtime: stop and say how to adopt them.
if not (workflow.dag_settings and (workflow.dag_settings.forceall or workflow.touch)):
    guard_snakemake(config)


onsuccess:
    # Record what Snakemake wrote in dvc.lock, so `dvc status`/`dvc repro` agree (only for params.yaml runs).
    try:
        print(f"maskforge handover: {record_for_dvc(config)}")
    except Exception as exc:   # the outputs are complete; only their record for DVC is missing
        print(f"maskforge handover: NOT recorded for DVC ({exc}); run `maskforge handover --to dvc`", file=sys.stderr)


wildcard_constraints:
    round=r"\d+",
    part=r"\d{5}",
    store=r"[A-Za-z0-9_]+",


def stage_code(name):
    """The stage module and the core modules it imports: editing any reruns the stage."""
    return code_files(STAGES[name])


def stage_params(name):
    """The stage's params keys as one canonical JSON value (any change or swap reruns it)."""
    return params_json(STAGES[name], config)


def stage_shell(name):
    return shell_command(STAGES[name], config)


def cam_store_output():
    """make_cam's output: the round's CAM store, or one part of it per job (cam.infer.shards > 1)."""
    shards = config["cam"]["infer"]["shards"]
    whole = "data/stores/cam_r{round}"
    return whole if shards == 1 else f"{whole}/{part_name(0, shards).replace('00000', '{part}', 1)}"


def part_suffix():
    """Log and benchmark names of make_cam: one per part when the CAMs are sharded."""
    return "" if config["cam"]["infer"]["shards"] == 1 else "_p{part}"


def cams_of_round(wildcards):
    """The round's CAM store (or its parts)."""
    return store_paths(config, f"{STORES}/cam_r{wildcards.round}")


def round0_cams():
    return store_paths(config, f"{STORES}/cam_r0")


def store_to_score(wildcards):
    """The store an evaluation scores (or its parts)."""
    return store_paths(config, f"{STORES}/{wildcards.store}")


def last_regions():
    """The regions mined over all AE rounds: the last round's accumulated store."""
    return f"{STORES}/regions_r{config['ae']['rounds'] - 1}"


def training_labels():
    """The mask store train_seg learns from (seg.labels; `gt` is the GT train masks)."""
    return f"{STORES}/{config['seg']['labels']}"


def previous_regions(wildcards):
    """AE round r reads the regions mined up to round r-1; round 0 reads none."""
    r = int(wildcards.round)
    return [f"{STORES}/regions_r{r - 1}"] if r > 0 else []
