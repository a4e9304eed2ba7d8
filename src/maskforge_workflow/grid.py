"""Parameter grids over cached stores: rerun one stage for every combination of some of its params,
reading its upstream stores as they are, and score each result — no upstream work, no downstream.

Each combination lives in `data/sweeps/<job>/<key=value,...>/` and is reused when the grid is run
again with it, so a grid can be widened step by step. (The DVC way, `dvc exp run --queue -S ...`,
also reuses unchanged upstream stages but reruns everything downstream of the stage as well.)
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from maskforge.config import ConfigError, canonical_json, get_key, select_keys, set_key, validate_config
from maskforge.data.manifest import Manifest
from maskforge.evaluation import evaluate_masks
from maskforge.progress import Progress
from maskforge.store import StoreError, open_store
from maskforge_workflow.expand import Job, jobs
from maskforge_workflow.table import MANIFEST, STAGES, params_keys

SWEEPS = "data/sweeps"


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """["crf.gt_prob=0.6,0.7", ...] → {"crf.gt_prob": [0.6, 0.7]} (values parsed as YAML)."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ConfigError(f"--set {item!r}: write KEY=V1,V2,... (e.g. crf.bilateral_srgb=3,5,7)")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def grid_job(config: Mapping[str, Any], stage_name: str, source: str | None) -> Job:
    """The DAG job a grid reruns: a stage that writes one mask store (a `source` picks crf's input)."""
    if stage_name not in STAGES or STAGES[stage_name].store_kind != "mask":
        mask_stages = sorted(n for n, s in STAGES.items() if s.store_kind == "mask")
        raise ConfigError(f"grid: {stage_name!r} does not write a mask store; choose one of {mask_stages}")
    found = [j for j in jobs(config) if j.stage.name == stage_name and (source is None or j.wildcards.get("source") == source)]
    if len(found) != 1:
        sources = [j.wildcards.get("source") for j in jobs(config) if j.stage.name == stage_name]
        raise ConfigError(f"grid: {stage_name} needs --source, one of {sources}")
    return found[0]


def combination_name(combination: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={json.dumps(v)}" for k, v in combination.items()).replace('"', "").replace("/", "_")


def run_grid(config: Mapping[str, Any], stage_name: str, grid: Mapping[str, list[Any]], source: str | None = None,
             root: Path = Path(".")) -> list[dict[str, Any]]:
    """Run `stage_name` for each combination of `grid` on the cached upstream stores; return rows
    {key: value..., "miou", "labelled_fraction", "store"} best first."""
    job = grid_job(config, stage_name, source)
    unknown = [k for k in grid if not any(k == p or k.startswith(p + ".") for p in job.params)]
    if unknown:
        raise ConfigError(f"grid: {stage_name} does not read {unknown}; it reads {list(job.params)}")
    for key in grid:
        get_key(config, key)   # fails with the key's name if it does not exist
    missing = [p for p in job.dep_paths() if not (root / p).exists()]
    if missing:
        raise StoreError(f"{missing[0]}: missing — build the upstream stores first (snakemake --cores all)")
    module = importlib.import_module(job.stage.module)
    manifest = Manifest.read(root / MANIFEST)
    rows = []
    combinations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    progress = Progress(len(combinations), f"grid {job.name}", "combinations", interval=0)
    for number, combination in enumerate(combinations, 1):
        trial = copy.deepcopy(dict(config))
        for key, value in combination.items():
            set_key(trial, key, value)
        validate_config(trial, f"grid {combination_name(combination)}")
        params = select_keys(trial, params_keys(job.stage.params, trial))
        folder = root / SWEEPS / job.name / re.sub(r"[^\w.=,+-]", "_", combination_name(combination))
        outs = {k: folder / Path(v).name for k, v in job.outs.items()}
        cached = _cached(outs["store"], params, [root / p for p in job.dep_paths()])
        print(f"grid {job.name} {number}/{len(combinations)}: {combination_name(combination)}"
              + (" (cached)" if cached else ""), flush=True)
        if not cached:
            argv = ["--params-json", canonical_json(params)]
            argv += [a for k, v in job.deps.items() for a in (f"--{k}", *(str(root / p) for p in
                                                                     ((v,) if isinstance(v, str) else v)))]
            argv += [a for k, v in outs.items() for a in (f"--{k}", str(v))]
            module.main(argv)
        with open_store(outs["store"], kind="mask", manifest=manifest) as store:
            summary = evaluate_masks(store, manifest)
        rows.append({**combination, "miou": summary["miou"], "labelled_fraction": summary["labelled_fraction"],
                     "store": str(outs["store"])})
        progress.update(mIoU=f"{summary['miou']:.2f}")
    return sorted(rows, key=lambda r: -r["miou"])


def _cached(store: Path, params: Mapping[str, Any], deps: Sequence[Path]) -> bool:
    """A finished store of an earlier grid run with the same params, newer than every input."""
    try:
        with open_store(store) as existing:
            same = existing.params == params
    except StoreError:
        return False
    return same and all(store.stat().st_mtime >= d.stat().st_mtime for d in deps)
