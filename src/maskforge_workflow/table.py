"""The stage table: the one description of the DAG that both engines follow.

Each Stage names its module (stages/<name>.py), the exact params keys it reads, and its named
inputs and outputs (each becomes a `--name PATH` argument), as path templates under the output
folders below. `expand.jobs(config)` expands it for a config, `rules.snakemake_rules` gives the
Snakefile its rules and `dvc_yaml.render_dvc_yaml` writes dvc.yaml; no path is written anywhere
else, and a test checks that both engines plan the same jobs. Adding a stage touches this table,
its stage module and its core code only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from maskforge.config import ConfigError, get_key

PREPARED = "data/prepared"
MANIFEST = f"{PREPARED}/manifest.json"
STORES = "data/stores"
MODELS = "data/models"
METRICS = "metrics"
PREDICTIONS = "data/predictions"
REPORTS = "reports"
LOGS = "logs"
BENCHMARKS = "benchmarks/runs"
# Threads of a GPU stage's job (torch's CPU threads: Snakemake sets OMP_NUM_THREADS to it). A fixed
# count, not "every core": a cluster submit has no core total. Snakemake caps it at --cores, and a
# profile's `set-threads` overrides it per rule (workflow/profiles/slurm matches its cpus_per_task).
GPU_STAGE_THREADS = 8
# The knobs of the selected seed method: `cam.seam` when cam.method is seam; nothing for a method
# without knobs (cam, gradcam). So a SEAM knob reruns nothing in a `method: cam` run.
METHOD_SECTION = "cam.{cam.method}"


@dataclass(frozen=True)
class Stage:
    name: str                            # Snakemake rule name; DVC stage name before wildcards
    params: tuple[str, ...]              # dotted params keys the stage reads, and only those; an entry
                                         # with {key} names the section chosen by that key (params_keys)
    deps: Mapping[str, str]              # --name → path template ({round}, {prev}, {last}, {store}, {source},
                                         # or a STORE_KEYS name: the store a params key names)
    outs: Mapping[str, str]
    wildcard: str | None = None          # "round", "store" or "source"
    sources: tuple[str, ...] = ()        # the values of {source}: stores the stage refines
    later_round_deps: Mapping[str, str] = field(default_factory=dict)  # only for round > 0
    metrics: tuple[str, ...] = ()        # outs that are DVC metrics (not cached)
    plots: tuple[str, ...] = ()          # outs that are DVC plots (not cached)
    store_kind: str | None = None        # kind of the store in outs["store"], if any
    collects: Mapping[str, str] = field(default_factory=dict)  # --name → "stores"|"metrics"|"plots": every such output of the DAG
    parts: str | None = None             # params key: the number of jobs that write parts of outs["store"]
    gpu: int = 0                         # GPUs a job uses (Snakemake: resources gpu=N; checked by a test)
    threads: int | str = 1               # Snakemake threads: a fixed count, or the params key that holds it
    shown: Mapping[str, str] = field(default_factory=dict)  # out → caption (workflow/report/) in `snakemake --report`
    reads_dataset: bool = False          # reads dataset.root's files: DVC lists them as deps, Snakemake
                                         # their content fingerprint (maskforge.data.fingerprint)

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
        reads_dataset=True,
    ),
    Stage(
        name="train_cam",
        wildcard="round",
        params=("cam.method", METHOD_SECTION, "cam.backbone", "cam.weights", "cam.output_stride", "cam.train"),
        deps={"prepared": PREPARED},
        later_round_deps={"regions": f"{STORES}/regions_r{{prev}}"},
        outs={"ckpt": f"{MODELS}/cam_r{{round}}.pt", "curve": f"{METRICS}/train_cam_r{{round}}.csv"},
        plots=("curve",),
        gpu=1,
        threads=GPU_STAGE_THREADS,
    ),
    Stage(
        name="make_cam",
        wildcard="round",
        params=("cam.method", METHOD_SECTION, "cam.infer"),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/cam_r{{round}}.pt"},
        later_round_deps={"regions": f"{STORES}/regions_r{{prev}}"},
        outs={"store": f"{STORES}/cam_r{{round}}"},
        store_kind="cam",
        parts="cam.infer.shards",
        gpu=1,
        threads=GPU_STAGE_THREADS,
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
        params=("irn.labels", "cam.backbone", "cam.weights", "irn.train"),
        deps={"prepared": PREPARED, "labels": f"{STORES}/{{irn_labels}}"},
        outs={"ckpt": f"{MODELS}/irn.pt", "curve": f"{METRICS}/train_irn.csv"},
        plots=("curve",),
        gpu=1,
        threads=GPU_STAGE_THREADS,
    ),
    Stage(
        name="refine_irn",
        params=("irn.infer",),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/irn.pt", "cams": f"{STORES}/cam_r0"},
        outs={"store": f"{STORES}/irn"},
        store_kind="mask",
        gpu=1,
        threads=GPU_STAGE_THREADS,
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
        threads=GPU_STAGE_THREADS,
    ),
    Stage(
        name="predict",
        params=("seg.infer", "crf"),
        deps={"prepared": PREPARED, "ckpt": f"{MODELS}/seg.pt"},
        outs={"store": f"{STORES}/predict", "pngs": PREDICTIONS},
        store_kind="mask",
        gpu=1,
        threads=GPU_STAGE_THREADS,
    ),
    Stage(
        name="report",
        params=("report",),
        deps={"prepared": PREPARED},
        collects={"stores": "stores", "metrics": "metrics", "curves": "plots"},
        outs={"html": f"{REPORTS}/index.html", "plots": f"{REPORTS}/plots"},   # the report's PNG plots, for `dvc plots diff`
        plots=("plots",),
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

# Path-template names whose value is the mask store a params key names: train_seg learns from
# seg.labels, train_irn from irn.labels. DVC reads the key itself (`${seg.labels}` in dvc.yaml).
STORE_KEYS = {"labels": "seg.labels", "irn_labels": "irn.labels"}

EVALUATOR_OF_KIND = {"cam": "evaluate_cam", "saliency": "evaluate_saliency", "mask": "evaluate", "region": "evaluate"}


def stage_of_module(module_name: str) -> Stage:
    """The table entry for `stages.<name>` (used by the stage modules themselves)."""
    name = re.sub(r"^stages\.", "", module_name)
    return STAGES[name]


def params_keys(keys: tuple[str, ...], config: Mapping[str, Any]) -> tuple[str, ...]:
    """The dotted keys a stage reads under `config`: each `{key}` in an entry is replaced by that
    key's value (METHOD_SECTION → "cam.seam"); an entry naming a section the config lacks (a
    method without knobs) is left out. The keys inside braces must be listed before the entry."""
    resolved = []
    for entry in keys:
        if "{" not in entry:
            resolved.append(entry)
            continue
        key = re.sub(r"\{([\w.]+)\}", lambda m: str(get_key(config, m.group(1))), entry)
        try:
            get_key(config, key)
        except ConfigError:
            continue
        resolved.append(key)
    return tuple(resolved)
