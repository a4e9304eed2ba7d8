"""Both engines on the synthetic pipeline (tiny budget): one real Snakemake run, the hand-over to DVC
and back, and the rerun sets — a param (or a swap of two), a code edit, a changed input store —
are exactly the changed stage and its descendants, derived from the stage table."""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from maskforge.atomic import is_leftover, remove_leftovers
from maskforge.config import load_config
from maskforge.data.voc import write_index_png
from maskforge_workflow.codedeps import code_files
from maskforge_workflow.expand import jobs
from browser import CHROMIUM, NO_CHROMIUM, WINDOW, render
from pipeline import BIN, REPO, copy_repo, engine_env, sh

pytestmark = pytest.mark.slow
TINY = load_config(REPO / "params.yaml", [REPO / "tests/configs/tiny.yaml"])


def snakemake(cwd, *args, check=True):
    return sh(cwd, str(BIN / "snakemake"), "--cores", "2", *args, check=check)


def dvc(cwd, *args):
    return sh(cwd, str(BIN / "dvc"), *args)


def planned_jobs(output: str) -> dict[str, int]:
    """Stage jobs from Snakemake's 'Job stats' table (the `all` target is not a stage)."""
    table = output.split("Job stats:")[1].split("total")[0] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "all"}


def dvc_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def descendants(config, changed) -> set[str]:
    """Job names of the jobs in `changed` (a predicate on jobs) and of everything downstream of them."""
    listed = jobs(config)
    hit = {job.name for job in listed if changed(job)}
    grew = True
    while grew:
        produced = {out for job in listed if job.name in hit for out in job.outs.values()}
        reads = {job.name for job in listed if produced & set(job.dep_paths())}
        grew = not reads <= hit
        hit |= reads
    return hit


def rules_of(config, names) -> dict[str, int]:
    """Job names → Snakemake's per-rule job counts."""
    return dict(collections.Counter(job.stage.name for job in jobs(config) if job.name in names))


def readers_of(key):
    return lambda job: any(key == p or key.startswith(p + ".") for p in job.params)


def write_overlay(path: Path, **changes) -> Path:
    overlay = {}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = overlay
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(overlay))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A clone whose params.yaml is the tiny config, after one full `snakemake --cores 2` run."""
    repo = copy_repo(tmp_path_factory.mktemp("engines") / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    sh(repo, str(BIN / "maskforge"), "dvc-yaml")
    sh(repo, "git", "init", "-q")                      # a clone: the project's own .dvc/ is already there
    run = snakemake(repo)
    assert "maskforge handover: recorded" in run.stdout + run.stderr
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    return repo


def test_snakemake_runs_the_graph_and_scores_every_store(project):
    metrics = {out for job in jobs(TINY) for k, out in job.outs.items() if k in job.stage.metrics}
    assert {f"metrics/{p.name}" for p in (project / "metrics").glob("*.json")} == metrics
    assert json.loads((project / "metrics/predict.json").read_text())["split"] == "val"
    report = (project / "reports/index.html").read_text()
    assert "<img" in report and "http" not in report.split("</title>")[1]      # offline: nothing fetched
    assert (project / "data/predictions").is_dir()


def test_report_and_store_diff_pages_render_in_a_browser(project, tmp_path):
    """The run's report and a store-diff page in headless Chromium: no errors, every image loads,
    the pages are as tall as their sections and no wider than the width the galleries fit."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    diff = tmp_path / "diff.html"
    sh(project, str(BIN / "maskforge"), "store", "diff", "data/stores/seeds", "data/stores/seeds_crf", "--html", str(diff))
    for page, least_height in ((project / "reports/index.html", 1500), (diff, 400)):
        seen = render(page, tmp_path)
        assert seen["errors"] == [] and seen["images"] > 0 and seen["loaded"] == seen["images"], (page, seen)
        assert seen["height"] >= least_height and seen["width"] <= WINDOW[0], (page, seen)
    plots = sorted(p.name for p in (project / "reports/plots").glob("*.png"))
    assert len(plots) == len(list((project / "metrics").glob("*.csv")))          # every curve and sweep
    dvc(project, "plots", "show", "-o", str(tmp_path / "dvc_plots"))
    shown = (tmp_path / "dvc_plots/index.html").read_text()
    assert all(f'src="static/workspace_reports_plots_{name}"' in shown for name in plots)   # images: offline
    snakemake(project, "--report", str(tmp_path / "report.zip"))                 # the README's command
    assert (tmp_path / "report.zip").stat().st_size > 0


def test_snakemake_hands_over_to_dvc_and_nothing_is_left_to_do(project):
    assert "up to date" in dvc(project, "status").stdout.lower()
    out = snakemake(project)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_two_variants_run_beside_the_default_graph_in_both_engines(project, tmp_path):
    """compare.variants in params.yaml: Snakemake runs only the jobs each variant changes (the
    default run's outputs are shared, not rerun), the report ranks every variant's stores, and DVC
    runs a variant's stage (with --variant) to the same bytes and then has nothing to do."""
    repo = tmp_path / "repo"
    shutil.copytree(project, repo, symlinks=True)
    variants = {"tau30": {"cam.bg_threshold": 0.3}, "bgsal20": {"assemble.bg_saliency": 0.2}}   # cheap: no training
    config = {**TINY, "compare": {"variants": variants}}
    (repo / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sh(repo, str(BIN / "maskforge"), "dvc-yaml")
    run = snakemake(repo)
    expected = {job.name for job in jobs(config) if job.variant} | {"report"}
    assert planned_jobs(run.stdout + run.stderr) == dict(collections.Counter(
        (f"{job.variant}__" if job.variant else "") + job.stage.name for job in jobs(config) if job.name in expected))
    assert "maskforge handover: recorded" in run.stdout + run.stderr
    for name in variants:
        assert json.loads((repo / f"metrics/{name}/seeds_crf.json" if name == "tau30" else
                           repo / f"metrics/{name}/assemble_ae_crf.json").read_text())["miou"] >= 0
    report = (repo / "reports/index.html").read_text()
    assert report.index("leaderboard") < report.index("metrics (")
    assert "<td class=l>tau30</td><td class=l>seeds</td>" in report and "<td class=l>bgsal20</td>" in report
    assert "up to date" in dvc(repo, "status").stdout.lower()
    seeds = repo / "data/stores/tau30/seeds"
    store_files = lambda: {p.relative_to(seeds): p.read_bytes() for p in seeds.rglob("*") if p.name != ".snakemake_timestamp"}
    before = store_files()
    dvc(repo, "repro", "--force", "--single-item", "tau30__seeds")       # params.yaml + --variant tau30
    assert store_files() == before
    assert "up to date" in dvc(repo, "status", "tau30__seeds").stdout.lower()
    # .dvcignore keeps Snakemake's .snakemake_timestamp out of DVC's hashes of folder outputs, so a
    # store DVC rewrites (without it) hashes as Snakemake's did (the hand-over sequence test checks it).


@pytest.mark.parametrize("changes, readers", [
    ({"cam.bg_threshold": 0.3}, ["cam.bg_threshold"]),
    ({"crf.bilateral_sxy": 10, "crf.bilateral_compat": 50}, ["crf"]),                      # a swap of two values
    ({"seg.labels": "seeds"}, ["seg.labels"]),
    ({"ae.erase_threshold": 0.7, "irn.infer.beta": 8}, ["ae.erase_threshold", "irn.infer"]),
    ({"cam.method": "gradcam"}, ["cam.method"]),
    ({"cam.seam.rescale": 0.5}, []),                   # a knob of a method the run does not use
])
def test_snakemake_reruns_a_changed_param_and_its_descendants_only(project, tmp_path, changes, readers):
    overlay = write_overlay(tmp_path / "o.yaml", **changes)
    out = snakemake(project, "-n", "--configfile", str(overlay))
    config = load_config(project / "params.yaml", [overlay])
    expected = descendants(config, lambda job: any(readers_of(key)(job) for key in readers))
    assert planned_jobs(out.stdout + out.stderr) == rules_of(config, expected)


@pytest.mark.parametrize("edited", ["stages/seeds.py", "src/maskforge/randomwalk.py", "src/maskforge/crf.py"])
def test_snakemake_reruns_the_stages_whose_code_changed_and_their_descendants(project, edited):
    path = project / edited
    text, stat = path.read_text(), path.stat()
    path.write_text(text + "\n# edited\n")
    try:
        out = snakemake(project, "-n")
    finally:
        path.write_text(text)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    expected = descendants(TINY, lambda job: edited in code_files(job.stage))
    assert planned_jobs(out.stdout + out.stderr) == rules_of(TINY, expected)


def test_snakemake_reruns_the_readers_of_a_changed_store(project):
    out = snakemake(project, "-n", "--forcerun", "saliency")
    expected = descendants(TINY, lambda job: job.stage.name == "saliency")
    assert planned_jobs(out.stdout + out.stderr) == rules_of(TINY, expected)
    assert "train_cam" not in planned_jobs(out.stdout + out.stderr)


KILLED = {"train_cam": "train_cam_r0", "make_cam": "make_cam_r0_p0", "crf": "crf_seeds"}   # stage → job
MOMENTS = ("temp", "renamed")     # a temporary output exists / the output was just renamed into place


def kill_at(cwd: Path, cmd: list[str], out: Path, moment: str) -> None:
    """Run `cmd` as its own process group and SIGKILL the whole group (engine and stage, as a crash
    or `scancel` would) the moment `out`'s temporary name appears, or right after its rename."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=engine_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    writing = False     # seen the forced rerun's gap (output removed, or its temporary name present)?
    while proc.poll() is None:      # not the inode: a removed output's inode is often reused by its successor
        temp = any(out.parent.glob(f"{out.name}.tmp-*"))
        writing = writing or temp or not out.exists()
        if temp if moment == "temp" else (writing and not temp and out.exists()):
            break
        time.sleep(0.002)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"{' '.join(cmd)} ended before the {moment} moment"


def files_of(path: Path) -> dict[str, bytes]:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"]
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in files}


def kill_and_rerun(project: Path, tmp_path: Path, engine: str, stage: str, moment: str) -> None:
    """SIGKILL one job of a rerun at `moment`, then the documented plain rerun command (here with
    the job's target, to keep it small): it completes, leaves no temporary names, and the output
    equals the clean run's."""
    repo = tmp_path / "repo"
    shutil.copytree(project, repo, symlinks=True)
    job = next(job for job in jobs(TINY) if job.name == KILLED[stage])
    target = next(iter(job.outs.values()))
    if engine == "snakemake":
        kill_at(repo, [str(BIN / "snakemake"), "--cores", "2", "--force", target], repo / target, moment)
        snakemake(repo, target)                            # README: `snakemake --cores all` reruns it
        assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(snakemake(repo, "-n", target))
    else:
        kill_at(repo, [str(BIN / "dvc"), "repro", "--force", "--single-item", job.name], repo / target, moment)
        dvc(repo, "repro", job.name)                       # README: `dvc repro` reruns it
        assert "up to date" in dvc(repo, "status", job.name).stdout.lower()
    assert files_of(repo / target) == files_of(project / target)
    leftovers = [p for top in ("data", "metrics") for p in (repo / top).rglob("*") if is_leftover(p.name)]
    if engine == "dvc":     # restored from DVC's run-cache, no writer ran: the next writer or snakemake removes it
        assert all(p.parent == (repo / target).parent for p in leftovers)
        assert remove_leftovers(repo / "data") == leftovers
    else:
        assert not leftovers


@pytest.mark.parametrize("engine, stage, moment", [("snakemake", "make_cam", "renamed"), ("dvc", "crf", "temp")])
def test_a_killed_job_is_finished_by_the_plain_rerun(project, tmp_path, engine, stage, moment):
    kill_and_rerun(project, tmp_path, engine, stage, moment)


@pytest.mark.kill_matrix
@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("stage", sorted(KILLED))
@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_kill_matrix(project, tmp_path, engine, stage, moment):
    kill_and_rerun(project, tmp_path, engine, stage, moment)


def test_a_second_engine_is_refused_while_one_runs(project, tmp_path):
    """One lock per working directory: `dvc repro` and a second `snakemake` beside a running
    Snakemake are refused before they touch an output, the latter naming the holder."""
    repo = tmp_path / "repo"
    shutil.copytree(project, repo, symlinks=True)
    running = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "--forceall"], cwd=repo,   # minutes: killed below
                               env=engine_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while running.poll() is None and not [p for p in (repo / ".snakemake/incomplete").rglob("*") if p.is_file()]:
            time.sleep(0.01)                               # until its job started
        second = snakemake(repo, "data/prepared", check=False)
        assert second.returncode != 0 and f"pid {running.pid} (snakemake" in second.stdout + second.stderr
        refused = sh(repo, str(BIN / "dvc"), "repro", "train_cam_r0", check=False)
        assert refused.returncode != 0 and "Unable to acquire lock" in refused.stdout + refused.stderr
        assert running.poll() is None                      # both were refused while it ran
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait()


def test_hand_over_sequence_needs_no_manual_step_and_ends_clean(project):
    """`dvc exp run -S` reruns the readers of the key (and what their outputs change); then
    snakemake → maskforge report → snakemake → dvc repro → snakemake --forceall -n each succeed with
    nothing typed in between: Snakemake adopts what `dvc status` vouches for (the exp run's outputs)
    and recomputes what it does not (the hand-written report), and records its own work for DVC."""
    ran = dvc_ran(dvc(project, "exp", "run", "-S", "cam.bg_threshold=0.3").stdout)
    config = load_config(project / "params.yaml")
    assert "seeds" in ran and ran <= descendants(config, readers_of("cam.bg_threshold"))
    seeds = json.loads(dvc(project, "metrics", "diff", "--all", "--json").stdout)["metrics/seeds.json"]["miou"]
    assert seeds["old"] is not None and seeds["new"] is not None    # HEAD's value comes from the DVC cache

    adopted = snakemake(project)
    assert "maskforge handover: adopted" in adopted.stderr and "data/stores/seeds" in adopted.stderr
    assert "Nothing to be done" in adopted.stdout + adopted.stderr
    sh(project, str(BIN / "maskforge"), "report")          # the README's manual step: reports/adhoc/, untracked
    untouched = snakemake(project)
    assert "Nothing to be done" in untouched.stdout + untouched.stderr
    sh(project, str(BIN / "maskforge"), "report", "--out", "reports/index.html")   # by hand over a tracked output
    redone = snakemake(project)
    assert "reports/index.html" in redone.stderr and "marked incomplete" in redone.stderr
    assert planned_jobs(redone.stdout + redone.stderr) == {"report": 1}
    assert dvc_ran(dvc(project, "repro").stdout) == set()
    forced = snakemake(project, "-n", "--forceall")
    assert planned_jobs(forced.stdout + forced.stderr) == rules_of(config, {job.name for job in jobs(config)})
    assert "up to date" in dvc(project, "status").stdout.lower()     # .snakemake_timestamp: .dvcignore

    stage = project / "stages/seeds.py"                  # a code edit: DVC reruns the stage (and only what
    stage.write_text(stage.read_text() + "\n# edited\n")  # its output changes — here nothing, same bytes)
    assert dvc_ran(dvc(project, "repro").stdout) == {"seeds"}

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["seg"]["labels"] = "seeds_crf"                # train_seg's input store comes from ${seg.labels}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(dvc(project, "status", "--json").stdout)) == {"train_seg"}


def test_overlay_naming_another_voc_root_runs(tiny_voc, tmp_path):
    """An overlay that names only dataset.root points the whole graph at another VOC-layout folder,
    and an edit of its files (not a touch) reruns prepare."""
    repo = copy_repo(tmp_path / "repo")
    overlay = tmp_path / "root.yaml"
    overlay.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc)}}))
    one_round = write_overlay(tmp_path / "one_round.yaml", **{"ae.rounds": 1})
    out = snakemake(repo, "metrics/seeds.json", "--configfile", "tests/configs/tiny.yaml", str(one_round), str(overlay))
    assert "not recorded for DVC" in out.stdout + out.stderr          # an overlay run is not what dvc.yaml says
    manifest = json.loads((repo / "data/prepared/manifest.json").read_text())
    assert manifest["format"] == "voc" and manifest["splits"]["train"] == ["a", "b", "c"]
    assert json.loads((repo / "metrics/seeds.json").read_text())["images"] == 3
    # The dataset is an input of prepare (its content fingerprint): a touch reruns nothing, an edit reruns prepare.
    dry_run = ("-n", "metrics/seeds.json", "--configfile", "tests/configs/tiny.yaml", str(one_round), str(overlay))
    os.utime(tiny_voc / "SegmentationClass/b.png")
    planned = snakemake(repo, *dry_run)
    assert "prepare" not in planned_jobs(planned.stdout + planned.stderr)
    write_index_png(tiny_voc / "SegmentationClass/b.png", np.ones((6, 8), np.uint8))
    planned = snakemake(repo, *dry_run)
    assert "prepare" in planned_jobs(planned.stdout + planned.stderr)


def test_default_profile_caps_gpu_jobs_and_lint_passes(tmp_path):
    """The workstation profile (used by default) caps GPU jobs."""
    repo = copy_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    default = yaml.safe_load((REPO / "workflow/profiles/default/config.yaml").read_text())
    assert default["resources"] == {"gpu": 1}
    dry = sh(repo, str(BIN / "snakemake"), "-n")
    assert "Using workflow specific profile profiles/default" in dry.stdout + dry.stderr
    assert sh(repo, str(BIN / "snakemake"), "--lint").returncode == 0
