"""dvc.yaml rendered from the expanded stage table (`maskforge dvc-yaml`)."""

from __future__ import annotations

from typing import Any, Mapping

from maskforge.config import variant_config, variants
from maskforge.data.fingerprint import dataset_paths
from maskforge_workflow.codedeps import code_files
from maskforge_workflow.expand import Job, jobs


def command(job: Job, params_arg: str) -> str:
    """The stage's command line; `params_arg` is how params reach it (JSON or params.yaml)."""
    args = [f"--variant {job.variant}"] if job.variant else []
    args += [f"--{k} {v if isinstance(v, str) else ' '.join(v)}" for k, v in job.deps.items()]
    args += [f"--{k} {' '.join(paths)}" for k, paths in job.collected.items()]
    args += [f"--{k} {v}" for k, v in job.outs.items()]
    args += [f"--part {job.wildcards['part']}"] if "part" in job.wildcards else []
    return " ".join([f"python -m {job.stage.module}", params_arg, *args])


def dvc_yaml(config: Mapping[str, Any]) -> dict[str, Any]:
    """dvc.yaml for `config` (DVC templating has no arithmetic, so each AE round is listed). A
    variant's stage reads params.yaml with its overrides (`--variant`) and lists them as a param.
    train_seg and train_irn read the store named by `${seg.labels}` / `${irn.labels}`, which DVC
    fills from params.yaml itself (`dvc exp run -S seg.labels=irn` works unchanged). With variants
    those stores are written out instead: which stores a variant has depends on it, so dvc.yaml must
    be regenerated after changing it."""
    stages: dict[str, Any] = {}
    for job in jobs(config, dvc_templates=not variants(config)):
        stage = job.stage
        own = variant_config(config, job.variant) if job.variant else config
        entry: dict[str, Any] = {
            "cmd": command(job, "--params-file params.yaml"),
            "deps": code_files(stage) + job.dep_paths() + (dataset_paths(own["dataset"]) if stage.reads_dataset else []),
        }
        overridden = variants(config).get(job.variant, {})       # a variant's values come from its own entry
        params = [p for p in job.params if not any(p == k or p.startswith(k + ".") for k in overridden)]
        params += [f"compare.variants.{job.variant}"] if job.variant else []
        if params:
            entry["params"] = params
        entry["outs"] = [v for k, v in job.outs.items() if k not in stage.metrics + stage.plots]
        # Cached like every output: git ignores them, and `dvc metrics diff`/`dvc plots diff` read
        # another commit's versions through its dvc.lock from the DVC cache.
        if stage.metrics:
            entry["metrics"] = [job.outs[k] for k in stage.metrics]
        if stage.plots:
            entry["plots"] = [job.outs[k] for k in stage.plots]
        if not entry["outs"]:
            del entry["outs"]
        stages[job.name] = entry
    return {"stages": stages}


DVC_YAML_HEADER = (
    "# Generated from the stage table (src/maskforge_workflow) and params.yaml by `maskforge dvc-yaml`: do not edit by hand.\n"
    "# Regenerate after changing the stage table, ae.rounds, cam.infer.shards or compare (and then seg.labels or irn.labels);\n"
    "# tests/test_workflow.py fails while it is stale.\n"
)


def render_dvc_yaml(config: Mapping[str, Any]) -> str:
    """dvc.yaml's text for `config`: the header, then the stages in DAG order."""
    import yaml
    return DVC_YAML_HEADER + yaml.safe_dump(dvc_yaml(config), sort_keys=False, width=1000)
