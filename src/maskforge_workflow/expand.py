"""The stage table expanded for a config: one job per AE round, source and part, one evaluation
per store, and the jobs each `compare` variant changes (in its own folders)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

from maskforge.config import ConfigError, canonical_json, get_key, select_keys, variant_config, variants
from maskforge.store_parts import PART, part_name
from maskforge_workflow.table import EVALUATOR_OF_KIND, STAGES, STORE_KEYS, STORES, Stage, params_keys

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
    params: tuple[str, ...] = ()                   # the stage's params keys resolved for the config
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


def params_json(stage: Stage, config: Mapping[str, Any]) -> str:
    """The stage's params as canonical JSON: one value, so any change or swap reruns it."""
    return canonical_json(select_keys(config, params_keys(stage.params, config)))


def _expand(stage: Stage, wildcards: dict[str, str], context: Mapping[str, str], config: Mapping[str, Any]) -> Job:
    fill = {**wildcards, **context}
    templates = dict(stage.deps)
    if stage.wildcard == "round" and int(wildcards["round"]) > 0:
        fill["prev"] = str(int(wildcards["round"]) - 1)
        templates.update(stage.later_round_deps)
    deps = {k: v.format(**fill) for k, v in templates.items()}
    outs = {k: v.format(**fill) for k, v in stage.outs.items()}
    return Job(stage, wildcards, deps, outs, params_keys(stage.params, config))


def _whole_jobs(config: Mapping[str, Any], dvc_templates: bool) -> list[Job]:
    """The table expanded for one config, stores whole: rounds, sources, then one evaluation per
    store (collecting stages get their inputs later)."""
    rounds = config["ae"]["rounds"]
    context = {"last": str(rounds - 1),
               **{name: f"${{{key}}}" if dvc_templates else str(get_key(config, key)) for name, key in STORE_KEYS.items()}}
    listed: list[Job] = []
    for stage in STAGES.values():
        if stage.wildcard is None:
            listed.append(_expand(stage, {}, context, config))
        elif stage.wildcard == "round":
            listed.extend(_expand(stage, {"round": str(r)}, context, config) for r in range(rounds))
        elif stage.wildcard == "source":
            listed.extend(_expand(stage, {"source": source}, context, config) for source in stage.sources)
    for job in [job for job in listed if job.stage.store_kind]:
            evaluator = STAGES[EVALUATOR_OF_KIND[job.stage.store_kind]]
            listed.append(_expand(evaluator, {"store": job.outs["store"].removeprefix(f"{STORES}/")}, context, config))
    return listed


def _reads_any(job: Job, keys: Iterable[str]) -> bool:
    """Whether the job reads one of the dotted `keys` (or a section holding one, or a key inside one)."""
    return any(key == p or key.startswith(p + ".") or p.startswith(key + ".") for key in keys for p in job.params)


def _variant_jobs(config: Mapping[str, Any], name: str, default: list[Job], dvc_templates: bool) -> list[Job]:
    """The jobs variant `name` changes: those reading an overridden key, or planned differently
    than in the default run (e.g. more AE rounds), and everything downstream of them, with their
    outputs in the variant's folders; the rest of the graph is shared with the default run."""
    overrides = variants(config)[name]
    listed = [job for job in _whole_jobs(variant_config(config, name), dvc_templates) if not job.stage.collects]
    same = {(job.name, tuple(job.deps.items()), tuple(job.outs.items())) for job in default}
    mine = {job.name for job in listed
            if _reads_any(job, overrides) or (job.name, tuple(job.deps.items()), tuple(job.outs.items())) not in same}
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


def jobs(config: Mapping[str, Any], dvc_templates: bool = False) -> list[Job]:
    """Every job of the DAG for `config`, upstream first: the default run (today's paths), then
    each compare variant's own jobs. `{last}` is the last AE round; `{labels}` and `{irn_labels}`
    are the stores train_seg and train_irn learn from (table.STORE_KEYS), or with `dvc_templates`
    DVC's `${seg.labels}` / `${irn.labels}`, which DVC fills from params.yaml itself."""
    default = _whole_jobs(config, dvc_templates)
    listed = [*default, *(job for name in variants(config) for job in _variant_jobs(config, name, default, dvc_templates))]
    _check_variant_outputs(listed)
    configs = {name: variant_config(config, name) for name in variants(config)}
    listed, parts_of = _split_into_parts(listed, lambda job: configs.get(job.variant, config))
    listed = [replace(job, deps={k: parts_of.get(v, v) for k, v in job.deps.items()}) for job in listed]
    stores = [_whole_store(job.outs["store"]) for job in listed if job.stage.store_kind]
    outputs = {"stores": tuple(p for path in dict.fromkeys(stores) for p in parts_of.get(path, (path,))),
               "metrics": tuple(job.outs[k] for job in listed for k in job.stage.metrics),
               "plots": tuple(job.outs[k] for job in listed if not job.stage.collects for k in job.stage.plots)}
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
