"""Stored bytes do not depend on the engine or the thread count: params reach a stage in one key
order whichever engine passed them, and torch computes with one fixed intra-op thread count."""

import json

import torch
import yaml

from maskforge.config import load_config
from maskforge_workflow.expand import params_json
from maskforge_workflow.table import STAGES
from stages._stage import TORCH_THREADS, parse_stage_args


def _reversed(node):
    return {k: _reversed(node[k]) for k in reversed(list(node))} if isinstance(node, dict) else node


def test_params_reach_a_stage_in_one_key_order_from_either_engine(tmp_path):
    """DVC's params.yaml (any key order) and Snakemake's JSON give the same dict in the same order,
    so meta.json and checkpoints hold the same bytes."""
    config = load_config()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_reversed(config), sort_keys=False))
    outs = ["--ckpt", str(tmp_path / "c.pt"), "--curve", str(tmp_path / "c.csv"), "--prepared", "p"]
    _, from_dvc = parse_stage_args("stages.train_cam", None, ["--params-file", str(tmp_path / "params.yaml"), *outs])
    _, from_snakemake = parse_stage_args("stages.train_cam", None,
                                         ["--params-json", params_json(STAGES["train_cam"], config), *outs])
    assert json.dumps(from_dvc) == json.dumps(from_snakemake)
    assert list(from_dvc["cam"]) == sorted(from_dvc["cam"])


def test_a_stage_computes_with_the_fixed_thread_count(tmp_path):
    """Whatever OMP_NUM_THREADS (Snakemake sets it to a job's threads) made torch start with."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parse_stage_args("stages.prepare", None, ["--prepared", str(tmp_path / "p")])
        assert torch.get_num_threads() == TORCH_THREADS == 1
    finally:
        torch.set_num_threads(before)
