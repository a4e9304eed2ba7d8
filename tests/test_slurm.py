"""The cluster paths on a real SLURM: a single-node SLURM from Debian's slurm-wlm and munge, started
for this module with a config written for this machine (`slurmd -C`: hostname, CPUs, memory; no
accounting database), runs the tiny pipeline through workflow/profiles/slurm — the two make_cam
shards as parallel jobs — and the `dvc repro` recipe workflow/slurm/dvc_repro.sbatch; their outputs
must equal a local Snakemake run's (the profile run's byte for byte; the DVC run's arrays byte for
byte, its provenance as JSON: see assert_same_outputs). Root only (it installs packages and starts daemons);
deselected by default, run with `pytest -n 0 -m slurm tests/test_slurm.py` (.ci/run's SLURM
step). The console of the profile run goes to $MASKFORGE_SLURM_TRANSCRIPT when that is set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from maskforge_workflow.expand import jobs
from maskforge_workflow.table import STAGES
from test_engines import BIN, REPO, TINY, copy_repo, planned_jobs, rules_of, sh

pytestmark = pytest.mark.slurm
PROFILE = REPO / "workflow/profiles/slurm/config.yaml"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")   # configless slurmd finds munge only here
CONFIGLESS = Path("/run/slurm/conf")               # where slurmd caches the config for job steps
FOREIGN = (Path("/etc/slurm/slurm.conf"), MUNGE_SOCKET, CONFIGLESS)
SNAKEMAKE_MARKER = ".snakemake_timestamp"


@dataclass
class Cluster:
    env: dict[str, str]      # the environment for SLURM clients and the runs submitted to it
    cpus: int
    memory_mb: int

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def install_slurm() -> str | None:
    """None once slurmctld, slurmd and munged are installed, else why they cannot be."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and installing slurm-wlm + munge needs root"
    if not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install slurm-wlm + munge"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}"
    return None


def slurm_conf(folder: Path, port: int, partitions: list[str]) -> str:
    """One node as `slurmd -C` sees this machine, every partition of the profile on it, no accounting.
    Up to four jobs share a core (OverSubscribe=FORCE:4; memory stays consumable), so on a 2-core
    machine both make_cam shards run at once beside whatever CPU job is still running."""
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    lines = [
        "ClusterName=maskforge-test", f"SlurmctldHost={socket.gethostname().split('.')[0]}",
        f"SlurmctldPort={port}", f"SlurmdPort={free_port()}", "SlurmctldParameters=enable_configless",
        "AuthType=auth/munge", "CredType=cred/munge", "SlurmUser=root", "SlurmdUser=root",
        f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ReturnToService=2",
        f"{node} State=UNKNOWN",
    ]
    name = node.split()[0].split("=")[1]
    lines += [f"PartitionName={p} Nodes={name} MaxTime=INFINITE State=UP OverSubscribe=FORCE:4{' Default=YES' * (i == 0)}"
              for i, p in enumerate(partitions)]
    return "\n".join(lines) + "\n"


def wait_for(ready, failure: str, seconds: int = 120) -> None:
    """Poll `ready()` once a second until it is true; AssertionError(failure) after `seconds`."""
    for _ in range(seconds):
        if ready():
            return
        time.sleep(1)
    raise AssertionError(failure)


def stop(pid_file: Path) -> None:
    """SIGTERM the daemon whose PID the file holds, and wait (10 s at most) until it is gone."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """munged, slurmctld and slurmd for this module, stopped afterwards by their PIDs."""
    reason = install_slurm()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("starting munged, slurmctld and slurmd as their own users needs root")
    if any(path.exists() for path in FOREIGN):
        pytest.skip(f"a SLURM or munge is already set up here ({', '.join(str(p) for p in FOREIGN if p.exists())}); "
                    "this test starts its own only where none is")
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "munge"):
        (folder / sub).mkdir(mode=0o700)
    key = folder / "munge/munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    profile = yaml.safe_load(PROFILE.read_text())
    partitions = sorted({r["slurm_partition"] for r in [profile["default-resources"], *profile["set-resources"].values()]
                         if "slurm_partition" in r}, key=lambda p: p != profile["default-resources"]["slurm_partition"])
    port = free_port()
    (folder / "slurm.conf").write_text(slurm_conf(folder, port, partitions))
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    daemons = [folder / "slurmd.pid", folder / "slurmctld.pid", folder / "munge/munged.pid"]
    try:
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--pid-file={folder}/munge/munged.pid",
                        f"--log-file={folder}/munge/munged.log", f"--seed-file={folder}/munge/seed"], check=True)
        subprocess.run(["slurmctld", "-f", str(folder / "slurm.conf")], check=True, env=env)
        wait_for(lambda: "UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env).stdout,
                 f"slurmctld never answered; see {folder}/slurmctld.log")
        subprocess.run(["slurmd", "--conf-server", f"{socket.gethostname().split('.')[0]}:{port}"], check=True, env=env)
        wait_for(lambda: set(subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                                            env=env).stdout.split()) == {"idle"},
                 f"the SLURM node never became idle; see {folder}/slurmd.log")
        node = dict(f.split("=", 1) for f in (folder / "slurm.conf").read_text().split("NodeName=")[1].split()[1:]
                    if "=" in f)
        yield Cluster(env=env, cpus=int(node["CPUs"]), memory_mb=int(node["RealMemory"]))
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for pid_file in daemons:
            stop(pid_file)
        shutil.rmtree(CONFIGLESS.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory) -> Path:
    """The tiny pipeline run locally (`snakemake --cores N`, threads per job as on the cluster)."""
    repo = copy_repo(tmp_path_factory.mktemp("local_run") / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    sh(repo, str(BIN / "snakemake"), "--cores", str(cluster.cpus), "--max-threads", str(threads_per_job(cluster)))
    return repo


def threads_per_job(cluster: Cluster) -> int:
    """CPUs (and threads) of a job: half the node's, as two make_cam shards share it."""
    return max(1, cluster.cpus // 2)


def test_profile_plans_every_rule_on_its_partition(tmp_path):
    """The shipped profile plans every rule (a dry run needs no cluster, only the executor plugin,
    which only the `cluster` extra installs: it slows every Snakemake start-up); GPU rules go to the
    GPU partition with the profile's thread count."""
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="SLURM executor plugin not installed: pip install -e '.[cluster]' to test the slurm profile")
    repo = copy_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    out = sh(repo, str(BIN / "snakemake"), "-n", "--workflow-profile", "workflow/profiles/slurm")
    slurm = yaml.safe_load(PROFILE.read_text())
    assert planned_jobs(out.stdout + out.stderr) == rules_of(TINY, {job.name for job in jobs(TINY)})
    gpu_rules = {name for name, s in STAGES.items() if s.gpu}
    assert all(slurm["set-resources"][r]["slurm_partition"] == "gpu" for r in gpu_rules)
    assert all(slurm["set-threads"][r] == slurm["set-resources"][r]["cpus_per_task"] for r in slurm["set-threads"])


def test_profile_runs_the_pipeline_on_slurm_like_a_local_run(cluster, local_run, tmp_path_factory):
    """The tiny pipeline through the shipped profile, sized for this node (CPUs, memory) and with
    `gpu: 0` for the GPU rules (the node has no GPU: the profile's CPU-only setting), to completion; both make_cam
    shards of a round run as SLURM jobs at once; every store equals a local run's."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="needs the cluster extra: pip install -e '.[cluster]'")
    base = tmp_path_factory.mktemp("profile_run")
    profile = yaml.safe_load(PROFILE.read_text())
    per_job = threads_per_job(cluster)
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        resources.update({"gpu": 0} if "gpu" in resources else {})
        resources["cpus_per_task"] = min(resources.get("cpus_per_task", 1), per_job)
        resources["mem_mb"] = min(resources["mem_mb"], cluster.memory_mb // 4)   # four jobs at once
    profile["set-threads"] = {rule: min(n, per_job) for rule, n in profile["set-threads"].items()}
    profile["seconds-between-status-checks"] = 2
    profile["slurm-init-seconds-before-status-checks"] = 2
    (base / "profile").mkdir()
    (base / "profile/config.yaml").write_text(yaml.safe_dump(profile))

    remote = copy_repo(base / "repo")
    (remote / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    transcript = Path(os.environ.get("MASKFORGE_SLURM_TRANSCRIPT", base / "transcript.txt"))
    with transcript.open("w") as console:
        submitted = subprocess.Popen([str(BIN / "snakemake"), "--workflow-profile", str(base / "profile")], cwd=remote,
                                     env={**cluster.env, "OMP_NUM_THREADS": "1"}, stdout=console, stderr=subprocess.STDOUT)
        shards_at_once = []
        while submitted.poll() is None:
            queue = cluster.run("squeue", "-o", "%.6i %.9P %.10T %.10M %k").stdout
            console.write(f"--- squeue at {time.strftime('%H:%M:%S')}\n{queue}")
            console.flush()
            running = [line for line in queue.splitlines() if "RUNNING" in line and "rule_make_cam" in line]
            if len(running) >= 2:
                shards_at_once.append(running)
            time.sleep(2)
    log = transcript.read_text()
    assert submitted.returncode == 0, log[-4000:]
    assert "has been submitted with SLURM jobid" in log and "steps (100%) done" in log
    assert shards_at_once, "the two make_cam shards never ran at the same time"
    assert_same_outputs(remote, local_run)


def test_dvc_repro_recipe_runs_stages_on_a_slurm_node(cluster, local_run, tmp_path_factory):
    """workflow/slurm/dvc_repro.sbatch for a stage list (the seeds and everything they need: round
    0's CAM training and both make_cam parts), DVC's cache on a shared folder: the job succeeds, the
    cache holds the outputs, DVC has nothing left to do, and the stores equal a Snakemake run's (CAM
    and seed arrays byte for byte; meta.json as JSON without input hashes, see assert_same_outputs)."""
    base = tmp_path_factory.mktemp("dvc_run")
    repo = copy_repo(base / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    sh(repo, str(BIN / "maskforge"), "dvc-yaml")
    sh(repo, "git", "init", "-q")
    cache = base / "shared-cache"
    env = {**cluster.env, "MASKFORGE_DVC_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    job = subprocess.run(["sbatch", "--parsable", "--wait", "--partition=cpu", "--cpus-per-task=1",
                          f"--mem={min(8000, cluster.memory_mb // 2)}", "workflow/slurm/dvc_repro.sbatch", "seeds"],
                         cwd=repo, capture_output=True, text=True, env=env)
    job_id = job.stdout.strip().split(";")[0]
    output = (repo / f"slurm-{job_id}.out").read_text() if job_id else ""
    assert job.returncode == 0, f"{job.stderr}\n{output[-4000:]}"
    assert "Running stage 'make_cam_r0" in output and "Running stage 'seeds'" in output
    assert any(cache.rglob("*")), "the shared DVC cache is empty"
    assert "seeds" not in sh(repo, str(BIN / "dvc"), "status", "seeds").stdout
    assert_same_outputs(repo, local_run, only=("data/prepared", "data/stores/cam_r0", "data/stores/seeds"),
                        across_engines=True)


def assert_same_outputs(run: Path, reference: Path, only: tuple[str, ...] = ("data/prepared", "data/stores",
                                                                               "data/models", "metrics"),
                       across_engines: bool = False) -> None:
    """Every file under `only` is in both runs with the same bytes, but for Snakemake's own marker in
    folder outputs (`.snakemake_timestamp`, which a DVC run does not write). `across_engines`: a
    store's meta.json is compared as JSON without its checkpoint hash, since DVC and Snakemake hand a
    stage its params in different key orders and a checkpoint and meta.json keep that order."""
    def files(root: Path, top: str) -> list[Path]:
        return sorted(p.relative_to(root) for p in (root / top).rglob("*") if p.is_file() and p.name != SNAKEMAKE_MARKER)

    def content(path: Path) -> bytes | dict:
        if not (across_engines and path.name == "meta.json"):
            return path.read_bytes()
        return {key: value for key, value in json.loads(path.read_text()).items() if key != "inputs"}

    for top in only:
        theirs, ours = files(reference, top), files(run, top)
        assert ours == theirs, f"{top}: files differ: {set(ours) ^ set(theirs)}"
        differing = [str(p) for p in ours if content(run / p) != content(reference / p)]
        assert not differing, f"differ from the local run: {differing}"
