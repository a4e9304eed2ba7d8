"""Both engines run the synthetic pipeline for real (tiny budget) and rerun exactly what changed."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from maskforge.config import load_config

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
GENERATED = {"data/prepared", "data/stores", "data/models", "metrics", "logs", "benchmarks/runs", ".snakemake",
             ".venv", ".git", ".dvc/cache", ".dvc/tmp", "dvc.lock", ".pytest_cache"}
BIN = Path(sys.executable).parent
EVERY_METRIC = sorted(f"{name}.json" for name in [
    "cam_r0", "cam_r1", "regions_r0", "regions_r1", "seeds", "saliency", "assemble_ae", "assemble_ae_ignored",
    "seeds_crf", "assemble_ae_crf"])


def copy_repo(dest: Path) -> Path:
    """The project without its generated outputs (a fresh clone plus whatever is uncommitted)."""
    def ignore(directory, names):
        rel = Path(directory).relative_to(REPO)
        return {n for n in names if (rel / n).as_posix() in GENERATED or n == "__pycache__" or n.endswith(".egg-info")}
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def sh(cwd, *cmd, check=True):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}   # stages run as `python -m ...`
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def snakemake(cwd, *args):
    return sh(cwd, str(BIN / "snakemake"), "--cores", "2", *args)


def planned_jobs(output: str) -> dict[str, int]:
    """Stage jobs from Snakemake's 'Job stats' table (the `all` target is not a stage)."""
    table = output.split("Job stats:")[1].split("total")[0] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "all"}


def write_overlay(path: Path, **changes) -> Path:
    overlay = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = overlay
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(overlay))
    return path


@pytest.fixture(scope="module")
def smk(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("smk") / "repo")
    snakemake(repo, "--configfile", "tests/configs/tiny.yaml")
    return repo


def test_snakemake_runs_the_graph_and_scores_every_store(smk):
    assert sorted(p.name for p in (smk / "metrics").glob("*.json")) == EVERY_METRIC
    assert 0 <= json.loads((smk / "metrics/seeds.json").read_text())["miou"] <= 100


def test_second_snakemake_call_has_nothing_to_do(smk):
    out = snakemake(smk, "--configfile", "tests/configs/tiny.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_bg_threshold_reruns_only_seeds_and_what_follows_it(smk, tmp_path):
    overlay = write_overlay(tmp_path / "o.yaml", **{"cam.bg_threshold": 0.3})
    out = snakemake(smk, "-n", "--configfile", str(overlay))
    assert planned_jobs(out.stdout + out.stderr) == {"seeds": 1, "crf": 1, "evaluate": 2}


def test_fewer_ae_rounds_rerun_only_what_reads_the_last_round(smk, tmp_path):
    overlay = write_overlay(tmp_path / "o.yaml", **{"ae.rounds": 1})
    out = snakemake(smk, "-n", "--configfile", str(overlay))
    assert planned_jobs(out.stdout + out.stderr) == {"assemble_ae": 1, "crf": 1, "evaluate": 2}   # F is now round 0's


def test_crf_param_reruns_only_crf_and_its_evaluations(smk, tmp_path):
    overlay = write_overlay(tmp_path / "o.yaml", **{"crf.bilateral_srgb": 7})
    out = snakemake(smk, "-n", "--configfile", str(overlay))
    assert planned_jobs(out.stdout + out.stderr) == {"crf": 2, "evaluate": 2}


def test_dvc_repro_runs_the_same_graph(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(load_config(repo / "params.yaml", [repo / "tests/configs/tiny.yaml"]),
                                                     sort_keys=False))
    sh(repo, str(BIN / "maskforge"), "dvc-yaml")
    sh(repo, "git", "init", "-q")                      # a clone: the project's own .dvc/ is already there
    sh(repo, str(BIN / "dvc"), "repro")
    assert sorted(p.name for p in (repo / "metrics").glob("*.json")) == EVERY_METRIC
    assert "up to date" in sh(repo, str(BIN / "dvc"), "status").stdout.lower()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["cam"]["bg_threshold"] = 0.3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = re.findall(r"Running stage '([\w]+)'", sh(repo, str(BIN / "dvc"), "repro").stdout)
    assert sorted(ran) == ["crf_seeds", "evaluate_seeds", "evaluate_seeds_crf", "seeds"]
    params["crf"]["bilateral_srgb"] = 7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = re.findall(r"Running stage '([\w]+)'", sh(repo, str(BIN / "dvc"), "repro").stdout)
    assert sorted(ran) == ["crf_assemble_ae", "crf_seeds", "evaluate_assemble_ae_crf", "evaluate_seeds_crf"]
    params["ae"]["rounds"] = 1                          # fewer AE rounds: regenerate dvc.yaml; only F's readers rerun
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, str(BIN / "maskforge"), "dvc-yaml")
    ran = re.findall(r"Running stage '([\w]+)'", sh(repo, str(BIN / "dvc"), "repro").stdout)
    assert sorted(ran) == ["assemble_ae", "crf_assemble_ae", "evaluate_assemble_ae", "evaluate_assemble_ae_crf"]


def test_overlay_naming_another_voc_root_runs(tiny_voc, tmp_path):
    """An overlay that names only dataset.root points the whole graph at another VOC-layout folder."""
    repo = copy_repo(tmp_path / "repo")
    overlay = tmp_path / "root.yaml"
    overlay.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc)}}))
    one_round = write_overlay(tmp_path / "one_round.yaml", **{"ae.rounds": 1})     # tiny.yaml, one AE round
    snakemake(repo, "--configfile", str(one_round), str(overlay))
    manifest = json.loads((repo / "data/prepared/manifest.json").read_text())
    assert manifest["format"] == "voc" and manifest["splits"]["train"] == ["a", "b", "c"]
    assert json.loads((repo / "metrics/seeds.json").read_text())["images"] == 3
