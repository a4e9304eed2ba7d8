"""The stage table: the one description of the DAG that both engines follow.

Each Stage names its module (stages/<name>.py), the exact params keys it reads, and its named
inputs and outputs (each becomes a `--name PATH` argument). Its code dependencies are read from
the imports of its module, followed through the core package, so editing any file it uses reruns
it. `jobs(config)` expands the table for a config (one job per AE round, one evaluation per store,
and the jobs each `compare` variant changes); `dvc_yaml(config)` renders dvc.yaml from those jobs,
and `snakemake_rules(config)` gives the Snakefile one rule per stage and variant
(workflow/rules/stages.smk turns each into a `rule:`). No path is written anywhere else. A test
checks that both engines plan the same jobs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from maskforge.config import ConfigError, canonical_json, get_key, select_keys, variant_config, variants
from maskforge.files import PART, part_name

PREPARED = "data/prepared"
MANIFEST = f"{PREPARED}/manifest.json"
STORES = "data/stores"
MODELS = "data/models"
METRICS = "metrics"
PREDICTIONS = "data/predictions"
REPORTS = "reports"
LOGS = "logs"
BENCHMARKS = "benchmarks/runs"
ALL_CORES = "all"                         # Stage.threads: every core Snakemake was given


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
    threads: str | None = None           # Snakemake threads: ALL_CORES or a params key (None: one)
    shown: Mapping[str, str] = field(default_factory=dict)  # out → caption (workflow/report/) in `snakemake --report`

    def is_folder(self, out: str) -> bool:
        """Outputs without a file suffix are folders (stores, prepared data, PNG folders)."""
        return not Path(self.outs[out]).suffix

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
        threads=ALL_CORES,
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
        threads=ALL_CORES,
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
        threads="crf.workers",
    ),
    Stage(
        name="ir_labels",
        params=("irn.fg_threshold", "irn.bg_threshold", "crf"),
        deps={"prepared": PREPARED, "cams": f"{STORES}/cam_r0"},
        outs={"store": f"{STORES}/ir_labels"},
        store_kind="mask",
        threads="crf.workers",
    ),
    Stage(
        name="train_irn",
        params=("cam.backbone", "cam.weights", "irn.train"),
        deps={"prepared": PREPARED, "labels": f"{STORES}/ir_labels"},
        outs={"ckpt": f"{MODELS}/irn.pt", "curve": f"{METRICS}/train_irn.csv"},
        plots=("curve",),
        gpu=1,
        threads=ALL_CORES,
    ),
    Stage(
        name="refine_irn",
        params=("irn.infer",),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/irn.pt", "cams": f"{STORES}/cam_r0"},
        outs={"store": f"{STORES}/irn"},
        store_kind="mask",
        gpu=1,
        threads=ALL_CORES,
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
        params=("seg.labels", "seg.backbone", "seg.weights", "seg.output_stride", "seg.psl", "seg.train"),
        deps={"prepared": PREPARED, "labels": f"{STORES}/{{labels}}"},
        outs={"ckpt": f"{MODELS}/seg.pt", "curve": f"{METRICS}/train_seg.csv"},
        plots=("curve",),
        gpu=1,
        threads=ALL_CORES,
    ),
    Stage(
        name="predict",
        params=("seg.infer", "crf"),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/seg.pt"},
        outs={"store": f"{STORES}/predict", "pngs": PREDICTIONS},
        store_kind="mask",
        gpu=1,
        threads=ALL_CORES,
    ),
    Stage(
        name="report",
        params=("report",),
        deps={"prepared": PREPARED},
        collects={"stores": "stores", "metrics": "metrics"},
        outs={"html": f"{REPORTS}/index.html"},
        shown={"html": "gallery.rst"},
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


VARIANT_SEPARATOR = "__"   # a variant's job and rule names: <variant>__<name>


def variant_path(path: str, variant: str) -> str:
    """Where a variant keeps an output: a folder named after it beside the default output
    (data/stores/cam_r0 → data/stores/seam/cam_r0, metrics/seeds.json → metrics/seam/seeds.json)."""
    if not variant:
        return path
    parent, _, name = path.rpartition("/")
    return f"{parent}/{variant}/{name}" if parent else f"{variant}/{name}"


@dataclass(frozen=True)
class Job:
    stage: Stage
    wildcards: Mapping[str, str]
    deps: Mapping[str, str | tuple[str, ...]]      # a store written in parts is the tuple of its parts
    outs: Mapping[str, str]
    collected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # --name → several paths
    variant: str = ""                              # the compare variant ("" for the default run)

    @property
    def name(self) -> str:
        name = self.stage.dvc_name.format(**self.wildcards)
        name = f"{name}_p{int(self.wildcards['part'])}" if "part" in self.wildcards else name
        return f"{self.variant}{VARIANT_SEPARATOR}{name}" if self.variant else name

    def dep_paths(self) -> list[str]:
        """Every path the job reads (parts of parted stores listed one by one)."""
        paths = [p for v in self.deps.values() for p in ((v,) if isinstance(v, str) else v)]
        return paths + [p for ps in self.collected.values() for p in ps]


ROOT = Path(__file__).resolve().parents[2]   # the project: src/maskforge_workflow/graph.py


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


def _whole_jobs(config: Mapping[str, Any], training_labels: str | None) -> list[Job]:
    """The table expanded for one config, stores whole: rounds, sources, then one evaluation per
    store (collecting stages get their inputs later)."""
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
    for job in [job for job in listed if job.stage.store_kind]:
            evaluator = STAGES[EVALUATOR_OF_KIND[job.stage.store_kind]]
            listed.append(_expand(evaluator, {"store": job.outs["store"].removeprefix(f"{STORES}/")}, context))
    return listed


def _reads_any(stage: Stage, keys: Iterable[str]) -> bool:
    """Whether the stage reads one of the dotted `keys` (or a section holding one, or a key inside one)."""
    return any(key == p or key.startswith(p + ".") or p.startswith(key + ".") for key in keys for p in stage.params)


def _variant_jobs(config: Mapping[str, Any], name: str, default: list[Job], training_labels: str | None) -> list[Job]:
    """The jobs variant `name` changes: those reading an overridden key, or planned differently
    than in the default run (e.g. more AE rounds), and everything downstream of them, with their
    outputs in the variant's folders; the rest of the graph is shared with the default run."""
    overrides = variants(config)[name]
    listed = [job for job in _whole_jobs(variant_config(config, name), training_labels) if not job.stage.collects]
    same = {(job.name, tuple(job.deps.items()), tuple(job.outs.items())) for job in default}
    mine = {job.name for job in listed
            if _reads_any(job.stage, overrides) or (job.name, tuple(job.deps.items()), tuple(job.outs.items())) not in same}
    grew = True
    while grew:                                    # AE rounds read later stages' outputs: grow to a fixed point
        changed = {out for job in listed if job.name in mine for out in job.outs.values()}
        readers = {job.name for job in listed if changed & set(job.dep_paths())}
        grew = not readers <= mine
        mine |= readers
    moved = {out: variant_path(out, name) for out in changed}
    return [replace(job, variant=name, deps={k: moved.get(v, v) for k, v in job.deps.items()},
                    outs={k: moved[v] for k, v in job.outs.items()}) for job in listed if job.name in mine]


def _check_variant_outputs(listed: list[Job]) -> None:
    """A variant's folders must not land inside another output (a variant named after a store)."""
    outs = sorted({out for job in listed for out in job.outs.values()})
    for inner, outer in zip(outs[1:], outs):
        if inner.startswith(outer + "/"):
            variant = next(job.variant for job in listed if job.variant and {inner, outer} & set(job.outs.values()))
            raise ConfigError(f"compare.variants.{variant}: its outputs would land inside {outer}; "
                              "rename the variant (it must not be the name of a store, model or folder)")


def jobs(config: Mapping[str, Any], training_labels: str | None = None) -> list[Job]:
    """Every job of the DAG for `config`, upstream first: the default run (today's paths), then
    each compare variant's own jobs. `{last}` is the last AE round and `{labels}` the store
    train_seg learns from (seg.labels, or `training_labels` if given)."""
    default = _whole_jobs(config, training_labels)
    listed = [*default, *(job for name in variants(config) for job in _variant_jobs(config, name, default, training_labels))]
    _check_variant_outputs(listed)
    configs = {name: variant_config(config, name) for name in variants(config)}
    listed, parts_of = _split_into_parts(listed, lambda job: configs.get(job.variant, config))
    listed = [replace(job, deps={k: parts_of.get(v, v) for k, v in job.deps.items()}) for job in listed]
    stores = [_whole_store(job.outs["store"]) for job in listed if job.stage.store_kind]
    outputs = {"stores": tuple(p for path in dict.fromkeys(stores) for p in parts_of.get(path, (path,))),
               "metrics": tuple(job.outs[k] for job in listed for k in job.stage.metrics)}
    return [replace(job, collected={name: outputs[what] for name, what in job.stage.collects.items()})
            if job.stage.collects else job for job in listed]


def _split_into_parts(listed: list[Job], config_of: Callable[[Job], Mapping[str, Any]]) -> tuple[list[Job], dict[str, tuple[str, ...]]]:
    """Each job of a parted stage (count > 1) becomes one job per part writing `<store>/part-i-of-n`;
    also returns store path → its parts."""
    out, parts_of = [], {}
    for job in listed:
        count = get_key(config_of(job), job.stage.parts) if job.stage.parts else 1
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


def command(job: Job, params_arg: str) -> str:
    """The stage's command line; `params_arg` is how params reach it (JSON or params.yaml)."""
    args = [f"--variant {job.variant}"] if job.variant else []
    args += [f"--{k} {v if isinstance(v, str) else ' '.join(v)}" for k, v in job.deps.items()]
    args += [f"--{k} {' '.join(paths)}" for k, paths in job.collected.items()]
    args += [f"--{k} {v}" for k, v in job.outs.items()]
    args += [f"--part {job.wildcards['part']}"] if "part" in job.wildcards else []
    return " ".join([f"python -m {job.stage.module}", params_arg, *args])


def shell_command(stage: Stage, parted: bool) -> str:
    """The Snakemake `shell:` of a rule: same arguments as the DVC cmd, params as JSON."""
    args = [f"--{k} {{input.{k}}}" for k in {**stage.deps, **stage.later_round_deps, **stage.collects}]
    args += [f"--{k} {{output.{k}}}" for k in stage.outs]
    args += ["--part {wildcards.part}"] if parted else []
    return " ".join([f"python -m {stage.module}", "--params-json {params.values:q}", *args, "> {log} 2>&1"])


@dataclass(frozen=True)
class Rule:
    """One Snakemake rule: the jobs of one stage in one variant, with wildcards for rounds, sources,
    stores and parts (workflow/rules/stages.smk writes a `rule:` from each)."""
    name: str
    stage: Stage
    outputs: Mapping[str, str]                 # --name → path template
    log: str
    benchmark: str
    params: str                                # the stage's params as canonical JSON
    wildcard_constraints: Mapping[str, str]    # each wildcard: exactly the values of this rule's jobs
    threads: int | None                        # None: every core Snakemake was given
    shell: str
    by_wildcards: Mapping[tuple[tuple[str, str], ...], Job]

    def inputs(self, wildcards: Mapping[str, str]) -> dict[str, str | list[str]]:
        """The job's inputs by name (Snakemake input function): code files, then the table's
        inputs; a later-round input is empty in round 0."""
        job = self.by_wildcards[tuple(sorted(dict(wildcards.items()).items()))]
        named: dict[str, str | list[str]] = {"code": code_files(self.stage)}
        named.update({k: [] for k in self.stage.later_round_deps})
        named.update({k: v if isinstance(v, str) else list(v) for k, v in job.deps.items()})
        named.update({k: list(v) for k, v in job.collected.items()})
        return named


def snakemake_rules(config: Mapping[str, Any]) -> list[Rule]:
    """The Snakefile's rules for `config`: one per stage and variant that has jobs."""
    grouped: dict[tuple[str, str], list[Job]] = {}
    for job in jobs(config):
        grouped.setdefault((job.variant, job.stage.name), []).append(job)
    rules = []
    for (variant, name), members in grouped.items():
        stage, own = STAGES[name], variant_config(config, variant) if variant else config
        count = get_key(own, stage.parts) if stage.parts else 1
        outputs = {k: variant_path(v, variant) for k, v in stage.outs.items()}
        if count > 1:
            outputs["store"] = f"{outputs['store']}/{part_name(0, count).replace('00000', '{part}', 1)}"
        job_name = stage.dvc_name + ("_p{part}" if count > 1 else "")
        values = {w: sorted({job.wildcards[w] for job in members}) for w in members[0].wildcards}
        rules.append(Rule(
            name=f"{variant}{VARIANT_SEPARATOR}{name}" if variant else name,
            stage=stage,
            outputs=outputs,
            log=variant_path(f"{LOGS}/{job_name}.log", variant),
            benchmark=variant_path(f"{BENCHMARKS}/{job_name}.tsv", variant),
            params=params_json(stage, own),
            wildcard_constraints={w: "|".join(re.escape(v) for v in vs) for w, vs in values.items()},
            threads=None if stage.threads == ALL_CORES else get_key(own, stage.threads) if stage.threads else 1,
            shell=shell_command(stage, parted=count > 1),
            by_wildcards={tuple(sorted(job.wildcards.items())): job for job in members},
        ))
    return rules


def dvc_yaml(config: Mapping[str, Any]) -> dict[str, Any]:
    """dvc.yaml for `config` (DVC templating has no arithmetic, so each AE round is listed). A
    variant's stage reads params.yaml with its overrides (`--variant`) and lists them as a param.
    With variants, train_seg's input store is written out, not `${seg.labels}`: which stores a
    variant has depends on it, so dvc.yaml must be regenerated after changing it."""
    stages: dict[str, Any] = {}
    for job in jobs(config, training_labels=None if variants(config) else DVC_TRAINING_LABELS):
        stage = job.stage
        entry: dict[str, Any] = {
            "cmd": command(job, "--params-file params.yaml"),
            "deps": code_files(stage) + job.dep_paths(),
        }
        params = [*stage.params, *([f"compare.variants.{job.variant}"] if job.variant else [])]
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


def stage_of_module(module_name: str) -> Stage:
    """The table entry for `stages.<name>` (used by the stage modules themselves)."""
    name = re.sub(r"^stages\.", "", module_name)
    return STAGES[name]


DVC_YAML_HEADER = (
    "# Generated from the stage table (src/maskforge_workflow) and params.yaml by `maskforge dvc-yaml`: do not edit by hand.\n"
    "# Regenerate after changing the stage table, ae.rounds, cam.infer.shards or compare (and then seg.labels);\n"
    "# tests/test_workflow.py fails while it is stale.\n"
)


def render_dvc_yaml(config: Mapping[str, Any]) -> str:
    """dvc.yaml's text for `config`: the header, then the stages in DAG order."""
    import yaml
    return DVC_YAML_HEADER + yaml.safe_dump(dvc_yaml(config), sort_keys=False, width=1000)
