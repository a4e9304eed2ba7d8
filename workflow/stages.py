"""The stage table: the one description of the DAG that both engines follow.

Each Stage names its module (stages/<name>.py), the exact params keys it reads, and its named
inputs and outputs (each becomes a `--name PATH` argument). Its code dependencies are read from
the imports of its module, followed through the core package, so editing any file it uses reruns it. `jobs(config)` expands the table for a config (one job per AE round,
one evaluation per store); `dvc_yaml(config)` renders dvc.yaml from those jobs, and the
Snakefile's rules use `params_json`, `code_files` and `shell_command` from here. A test runs
both engines' planners and checks that they agree job by job.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Mapping

from maskforge.config import canonical_json, get_key, select_keys
from maskforge.files import PART, part_name

PREPARED = "data/prepared"
MANIFEST = f"{PREPARED}/manifest.json"
STORES = "data/stores"
MODELS = "data/models"
METRICS = "metrics"


@dataclass(frozen=True)
class Stage:
    name: str                            # Snakemake rule name; DVC stage name before wildcards
    params: tuple[str, ...]              # dotted params keys the stage reads, and only those
    deps: Mapping[str, str]              # --name → path template ({round}, {prev}, {last}, {store}, {source})
    outs: Mapping[str, str]
    wildcard: str | None = None          # "round", "store" or "source"
    sources: tuple[str, ...] = ()        # the values of {source}: stores the stage refines
    later_round_deps: Mapping[str, str] = field(default_factory=dict)  # only for round > 0
    metrics: tuple[str, ...] = ()        # outs that are DVC metrics (not cached)
    plots: tuple[str, ...] = ()          # outs that are DVC plots (not cached)
    store_kind: str | None = None        # kind of the store in outs["store"], if any
    collects: Mapping[str, str] = field(default_factory=dict)  # --name → "stores"|"metrics": every such output of the DAG
    parts: str | None = None             # params key: the number of jobs that write parts of outs["store"]
    gpu: int = 0                         # GPUs a job uses (Snakemake: resources gpu=N; checked by a test)

    @property
    def module(self) -> str:
        return f"stages.{self.name}"

    @property
    def dvc_name(self) -> str:
        templates = {"round": f"{self.name}_r{{round}}", "store": "evaluate_{store}", "source": f"{self.name}_{{source}}"}
        return templates.get(self.wildcard, self.name)


STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage(
        name="prepare",
        params=("dataset",),
        deps={},
        outs={"prepared": PREPARED},
    ),
    Stage(
        name="train_cam",
        wildcard="round",
        params=("cam.backbone", "cam.weights", "cam.output_stride", "cam.train"),
        deps={"prepared": PREPARED},
        later_round_deps={"regions": f"{STORES}/regions_r{{prev}}"},
        outs={"ckpt": f"{MODELS}/cam_r{{round}}.pt", "curve": f"{METRICS}/train_cam_r{{round}}.csv"},
        plots=("curve",),
        gpu=1,
    ),
    Stage(
        name="make_cam",
        wildcard="round",
        params=("cam.infer",),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/cam_r{{round}}.pt"},
        later_round_deps={"regions": f"{STORES}/regions_r{{prev}}"},
        outs={"store": f"{STORES}/cam_r{{round}}"},
        store_kind="cam",
        parts="cam.infer.shards",
        gpu=1,
    ),
    Stage(
        name="erase",
        wildcard="round",
        params=("ae.erase_threshold",),
        deps={"cams": f"{STORES}/cam_r{{round}}"},
        later_round_deps={"regions": f"{STORES}/regions_r{{prev}}"},
        outs={"store": f"{STORES}/regions_r{{round}}"},
        store_kind="region",
    ),
    Stage(
        name="seeds",
        params=("cam.bg_threshold",),
        deps={"cams": f"{STORES}/cam_r0"},
        outs={"store": f"{STORES}/seeds"},
        store_kind="mask",
    ),
    Stage(
        name="saliency",
        params=("saliency",),
        deps={"prepared": PREPARED},
        outs={"store": f"{STORES}/saliency"},
        store_kind="saliency",
    ),
    Stage(
        name="assemble_ae",
        params=("assemble",),
        deps={"regions": f"{STORES}/regions_r{{last}}", "saliency": f"{STORES}/saliency"},
        outs={"store": f"{STORES}/assemble_ae", "ignored": f"{METRICS}/assemble_ae_ignored.json"},
        metrics=("ignored",),
        store_kind="mask",
    ),
    Stage(
        name="crf",
        wildcard="source",
        sources=("seeds", "assemble_ae"),
        params=("crf",),
        deps={"prepared": PREPARED, "masks": f"{STORES}/{{source}}"},
        outs={"store": f"{STORES}/{{source}}_crf"},
        store_kind="mask",
    ),
    Stage(
        name="ir_labels",
        params=("irn.fg_threshold", "irn.bg_threshold", "crf"),
        deps={"prepared": PREPARED, "cams": f"{STORES}/cam_r0"},
        outs={"store": f"{STORES}/ir_labels"},
        store_kind="mask",
    ),
    Stage(
        name="train_irn",
        params=("cam.backbone", "cam.weights", "irn.train"),
        deps={"prepared": PREPARED, "labels": f"{STORES}/ir_labels"},
        outs={"ckpt": f"{MODELS}/irn.pt", "curve": f"{METRICS}/train_irn.csv"},
        plots=("curve",),
        gpu=1,
    ),
    Stage(
        name="refine_irn",
        params=("irn.infer",),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/irn.pt", "cams": f"{STORES}/cam_r0"},
        outs={"store": f"{STORES}/irn"},
        store_kind="mask",
        gpu=1,
    ),
    Stage(
        name="ground_truth",
        params=(),
        deps={"prepared": PREPARED},
        outs={"store": f"{STORES}/gt"},
        store_kind="mask",
    ),
    Stage(
        name="train_seg",
        params=("seg.method", "seg.labels", "seg.labelled_fraction", "seg.backbone", "seg.weights", "seg.output_stride",
                "seg.psl", "seg.pseudoseg", "seg.train"),
        deps={"prepared": PREPARED, "labels": f"{STORES}/{{labels}}"},
        outs={"ckpt": f"{MODELS}/seg.pt", "curve": f"{METRICS}/train_seg.csv"},
        plots=("curve",),
        gpu=1,
    ),
    Stage(
        name="predict",
        params=("seg.infer", "crf"),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/seg.pt"},
        outs={"store": f"{STORES}/predict", "pngs": "data/predictions"},
        store_kind="mask",
        gpu=1,
    ),
    Stage(
        name="report",
        params=("report",),
        deps={"prepared": PREPARED},
        collects={"stores": "stores", "metrics": "metrics"},
        outs={"html": "reports/index.html"},
    ),
    Stage(
        name="evaluate",
        wildcard="store",
        params=(),
        deps={"prepared": PREPARED, "store": f"{STORES}/{{store}}"},
        outs={"metrics": f"{METRICS}/{{store}}.json"},
        metrics=("metrics",),
    ),
    Stage(
        name="evaluate_cam",
        wildcard="store",
        params=("evaluate.thresholds",),
        deps={"prepared": PREPARED, "store": f"{STORES}/{{store}}"},
        outs={"metrics": f"{METRICS}/{{store}}.json", "sweep": f"{METRICS}/{{store}}_sweep.csv"},
        metrics=("metrics",),
        plots=("sweep",),
    ),
    Stage(
        name="evaluate_saliency",
        wildcard="store",
        params=("assemble.bg_saliency",),
        deps={"prepared": PREPARED, "store": f"{STORES}/{{store}}"},
        outs={"metrics": f"{METRICS}/{{store}}.json"},
        metrics=("metrics",),
    ),
]}

EVALUATOR_OF_KIND = {"cam": "evaluate_cam", "saliency": "evaluate_saliency", "mask": "evaluate", "region": "evaluate"}


@dataclass(frozen=True)
class Job:
    stage: Stage
    wildcards: Mapping[str, str]
    deps: Mapping[str, str | tuple[str, ...]]      # a store written in parts is the tuple of its parts
    outs: Mapping[str, str]
    collected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # --name → several paths

    @property
    def name(self) -> str:
        name = self.stage.dvc_name.format(**self.wildcards)
        return f"{name}_p{int(self.wildcards['part'])}" if "part" in self.wildcards else name

    def dep_paths(self) -> list[str]:
        """Every path the job reads (parts of parted stores listed one by one)."""
        paths = [p for v in self.deps.values() for p in ((v,) if isinstance(v, str) else v)]
        return paths + [p for ps in self.collected.values() for p in ps]


ROOT = Path(__file__).resolve().parents[1]


def _module_path(module: str) -> Path | None:
    """The repo file of a `maskforge.*` or `stages.*` module (None for anything else)."""
    parts = module.split(".")
    base = {"maskforge": ROOT / "src", "stages": ROOT}.get(parts[0])
    if base is None:
        return None
    path = base.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@cache
def _imports(path: Path, module: str) -> frozenset[str]:
    """Modules named by the import statements of one file (relative imports resolved)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)   # `from pkg import module`
    return frozenset(names)


def code_files(stage: Stage) -> list[str]:
    """The files whose edits must rerun `stage`: its module and every project module it imports,
    directly or through others (package __init__ files hold no code and are left out)."""
    seen: dict[str, Path] = {}
    todo = [stage.module]
    while todo:
        module = todo.pop()
        path = _module_path(module)
        if module in seen or path is None or not path.exists():
            continue
        seen[module] = path
        todo.extend(sorted(_imports(path, module)))
    files = [p.relative_to(ROOT).as_posix() for p in seen.values() if p.name != "__init__.py"]
    return sorted(files, key=lambda f: (not f.startswith("stages/"), f))


def params_json(stage: Stage, config: Mapping[str, Any]) -> str:
    """The stage's params as canonical JSON: one value, so any change or swap reruns it."""
    return canonical_json(select_keys(config, stage.params))


def _expand(stage: Stage, wildcards: dict[str, str], context: Mapping[str, str]) -> Job:
    fill = {**wildcards, **context}
    templates = dict(stage.deps)
    if stage.wildcard == "round" and int(wildcards["round"]) > 0:
        fill["prev"] = str(int(wildcards["round"]) - 1)
        templates.update(stage.later_round_deps)
    deps = {k: v.format(**fill) for k, v in templates.items()}
    outs = {k: v.format(**fill) for k, v in stage.outs.items()}
    return Job(stage, wildcards, deps, outs)


# DVC reads seg.labels from params.yaml itself (`dvc exp run -S seg.labels=irn` works unchanged).
DVC_TRAINING_LABELS = "${seg.labels}"


def jobs(config: Mapping[str, Any], training_labels: str | None = None) -> list[Job]:
    """Every job of the DAG for `config`, upstream first. `{last}` is the last AE round and
    `{labels}` the store train_seg learns from (seg.labels, or `training_labels` if given)."""
    rounds = config["ae"]["rounds"]
    context = {"last": str(rounds - 1), "labels": training_labels or config["seg"]["labels"]}
    listed: list[Job] = []
    for stage in STAGES.values():
        if stage.wildcard is None:
            listed.append(_expand(stage, {}, context))
        elif stage.wildcard == "round":
            listed.extend(_expand(stage, {"round": str(r)}, context) for r in range(rounds))
        elif stage.wildcard == "source":
            listed.extend(_expand(stage, {"source": source}, context) for source in stage.sources)
    listed, parts_of = _split_into_parts(listed, config)
    stores = {_whole_store(job.outs["store"]): job.stage.store_kind for job in listed if job.stage.store_kind}
    for path, kind in stores.items():
        evaluator = STAGES[EVALUATOR_OF_KIND[kind]]
        listed.append(_expand(evaluator, {"store": path.removeprefix(f"{STORES}/")}, context))
    listed = [replace(job, deps={k: parts_of.get(v, v) for k, v in job.deps.items()}) for job in listed]
    outputs = {"stores": tuple(p for path in stores for p in parts_of.get(path, (path,))),
               "metrics": tuple(job.outs[k] for job in listed for k in job.stage.metrics)}
    return [replace(job, collected={name: outputs[what] for name, what in job.stage.collects.items()})
            if job.stage.collects else job for job in listed]


def _split_into_parts(listed: list[Job], config: Mapping[str, Any]) -> tuple[list[Job], dict[str, tuple[str, ...]]]:
    """Each job of a parted stage (count > 1) becomes one job per part writing `<store>/part-i-of-n`;
    also returns store path → its parts."""
    out, parts_of = [], {}
    for job in listed:
        count = get_key(config, job.stage.parts) if job.stage.parts else 1
        if count == 1:
            out.append(job)
            continue
        whole = job.outs["store"]
        parts_of[whole] = tuple(f"{whole}/{part_name(i, count)}" for i in range(count))
        out.extend(replace(job, wildcards={**job.wildcards, "part": f"{i:05d}"},
                           outs={**job.outs, "store": parts_of[whole][i]}) for i in range(count))
    return out, parts_of


def _whole_store(path: str) -> str:
    """The store a part belongs to (the path itself for a whole store)."""
    return path.rpartition("/")[0] if PART.match(path.rpartition("/")[2]) else path


def final_targets(config: Mapping[str, Any]) -> list[str]:
    """What `rule all` asks for: every metrics file and the report (which pull in every store)."""
    return [out for job in jobs(config) for key, out in job.outs.items()
            if key in job.stage.metrics or job.stage.collects]


def collected(config: Mapping[str, Any], what: str) -> list[str]:
    """Every store ("stores", parts one by one) or metrics file ("metrics") of the DAG, for a
    collecting rule's input."""
    return next(list(job.collected[name]) for job in jobs(config)
                for name, kind in job.stage.collects.items() if kind == what)


def store_paths(config: Mapping[str, Any], path: str) -> list[str]:
    """What a rule reading the store at `path` depends on: the store, or each of its parts."""
    count = next((get_key(config, job.stage.parts) for job in jobs(config)
                  if job.stage.parts and _whole_store(job.outs["store"]) == path), 1)
    return [path] if count == 1 else [f"{path}/{part_name(i, count)}" for i in range(count)]


def command(job: Job, params_arg: str) -> str:
    """The stage's command line; `params_arg` is how params reach it (JSON or params.yaml)."""
    args = [f"--{k} {v if isinstance(v, str) else ' '.join(v)}" for k, v in job.deps.items()]
    args += [f"--{k} {' '.join(paths)}" for k, paths in job.collected.items()]
    args += [f"--{k} {v}" for k, v in job.outs.items()]
    args += [f"--part {job.wildcards['part']}"] if "part" in job.wildcards else []
    return " ".join([f"python -m {job.stage.module}", params_arg, *args])


def shell_command(stage: Stage, config: Mapping[str, Any]) -> str:
    """The Snakemake `shell:` of a rule: same arguments as the DVC cmd, params as JSON."""
    args = [f"--{k} {{input.{k}}}" for k in {**stage.deps, **stage.later_round_deps, **stage.collects}]
    args += [f"--{k} {{output.{k}}}" for k in stage.outs]
    args += ["--part {wildcards.part}"] if stage.parts and get_key(config, stage.parts) > 1 else []
    return " ".join([f"python -m {stage.module}", "--params-json {params.values:q}", *args, "> {log} 2>&1"])


def dvc_yaml(config: Mapping[str, Any]) -> dict[str, Any]:
    """dvc.yaml for `config` (DVC templating has no arithmetic, so each AE round is listed)."""
    stages: dict[str, Any] = {}
    for job in jobs(config, training_labels=DVC_TRAINING_LABELS):
        stage = job.stage
        entry: dict[str, Any] = {
            "cmd": command(job, "--params-file params.yaml"),
            "deps": code_files(stage) + job.dep_paths(),
        }
        if stage.params:
            entry["params"] = list(stage.params)
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


def stage_of_module(module_name: str) -> Stage:
    """The table entry for `stages.<name>` (used by the stage modules themselves)."""
    name = re.sub(r"^stages\.", "", module_name)
    return STAGES[name]


DVC_YAML_HEADER = (
    "# Generated from workflow/stages.py and params.yaml by `maskforge dvc-yaml`: do not edit by hand.\n"
    "# Regenerate after changing the stage table, ae.rounds or cam.infer.shards; tests/test_workflow.py fails while it is stale.\n"
)


def render_dvc_yaml(config: Mapping[str, Any]) -> str:
    """dvc.yaml's text for `config`: the header, then the stages in DAG order."""
    import yaml
    return DVC_YAML_HEADER + yaml.safe_dump(dvc_yaml(config), sort_keys=False, width=1000)
