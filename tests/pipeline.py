"""Run part of the graph in DAG order through the stages' main()s, as both engines call them; score helpers;
a copy of the project without its outputs, and engine commands that fail with the engine's own lines."""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from maskforge.config import load_config
from maskforge.data.manifest import Manifest
from maskforge.metrics import ConfusionMatrix
from maskforge.store_parts import PART
from maskforge_workflow.expand import jobs
from maskforge_workflow.table import METRICS, MODELS, STORES

CAM_STAGES = {"prepare", "train_cam", "make_cam", "erase", "seeds", "evaluate", "evaluate_cam"}
REFINE_STAGES = {"saliency", "evaluate_saliency", "assemble_ae", "crf"}
REPO = Path(__file__).resolve().parents[1]
GENERATED = {"data/prepared", "data/stores", "data/models", "data/predictions", "data/sweeps", "metrics", "logs",
             "reports", "benchmarks/runs", ".snakemake", ".venv", ".git", ".dvc/cache", ".dvc/tmp", "dvc.lock",
             ".pytest_cache", "dvc_plots"}
BIN = Path(sys.executable).parent
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def copy_repo(dest: Path) -> Path:
    """The project without its generated outputs (a fresh clone plus whatever is uncommitted)."""
    def ignore(directory, names):
        rel = Path(directory).relative_to(REPO)
        return {n for n in names if (rel / n).as_posix() in GENERATED or n == "__pycache__" or n.endswith(".egg-info")}
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def engine_env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",   # stages run as `python -m ...`
            "OMP_NUM_THREADS": "1"}   # two jobs at once on two cores: one thread each, no oversubscription


def sh(cwd, *cmd, check=True):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=engine_env())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def local_name(path: str) -> str:
    """A table path's name in a flat run folder: data/stores/cam_r0 → cam_r0, metrics/seeds.json →
    seeds.json, data/models/cam_r0.pt → cam_r0.pt, data/prepared → prepared (parts keep their folder)."""
    for root in (STORES, MODELS, METRICS, "data"):
        if path.startswith(root + "/"):
            return path[len(root) + 1:]
    raise ValueError(f"{path}: not an output of the table")


def committed_params(root: Path) -> Path:
    """The project's params.yaml as committed (git HEAD), written under root: `dvc exp run -S`
    rewrites the working tree's params.yaml, and a run that scores the defaults must not score what a
    user's last experiment left there. Outside a git checkout, the working tree's file."""
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True)
    if shown.returncode != 0:
        return REPO / "params.yaml"
    path = root / "committed_params.yaml"
    path.write_text(shown.stdout)
    return path


def run_cam_pipeline(root: Path, overlays: list, rounds: int, refine: bool = True) -> dict[str, str]:
    """The committed params.yaml + overlays with `rounds` AE rounds → every job of the CAM/AE
    stages (with `refine`, also saliency, assembly and CRF) whose inputs the run has, in DAG order,
    each output under root by its `local_name`; returns that name → path for every output (a store
    written in parts under its own name)."""
    root.mkdir(parents=True, exist_ok=True)
    config = load_config(committed_params(root), overlays)
    config["ae"]["rounds"] = rounds
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(config))
    wanted = CAM_STAGES | (REFINE_STAGES if refine else set())
    todo = [job for job in jobs(config) if job.stage.name in wanted]
    produced = {out for job in todo for out in job.outs.values()}
    todo = [job for job in todo if set(job.dep_paths()) <= produced]   # e.g. no scores of stores not built here
    done: set[str] = set()
    while todo:
        job = next(job for job in todo if set(job.dep_paths()) <= done)
        argv = ["--params-file", str(params)]
        argv += [a for k, v in job.deps.items() for a in (f"--{k}", *(str(root / local_name(p)) for p in
                                                                   ((v,) if isinstance(v, str) else v)))]
        argv += [a for k, v in job.outs.items() for a in (f"--{k}", str(root / local_name(v)))]
        argv += ["--part", job.wildcards["part"]] if "part" in job.wildcards else []
        importlib.import_module(job.stage.module).main(argv)
        done |= set(job.outs.values())
        todo.remove(job)
    names = {str(Path(n).parent) if PART.match(Path(n).name) else n for n in map(local_name, done)}   # parts → their store
    return {name: str(root / name) for name in names}


def trivial_baseline_mious(manifest: Manifest) -> dict[str, float]:
    """mIoU on train of two label-aware baselines: all background, and the whole image as the
    image's first labelled class."""
    scores = {}
    for name, fill in {"all_background": lambda i: 0, "whole_image_first_label": lambda i: manifest.label_ids(i)[0]}.items():
        matrix = ConfusionMatrix(len(manifest.classes))
        for image_id in manifest.ids("train"):
            gt = manifest.load_mask(image_id)
            matrix.update(np.full(gt.shape, fill(image_id), np.uint8), gt)
        scores[name] = matrix.miou()
    return scores


def metric(path, key):
    return json.loads(Path(path).read_text())[key]
