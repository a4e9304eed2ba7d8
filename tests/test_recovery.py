"""Recovery without hand work: the working directory's lock (shared with DVC, freed when its holder
is killed), a killed writer's temporary names (removed by the next writer, never hashed), and the
Snakemake command-line flags the hand-over reads before Snakemake knows them."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import zc.lockfile

from maskforge.atomic import atomic_write_text, remove_leftovers, temp_path
from maskforge.store import input_digest
from maskforge_workflow import lock
from maskforge_workflow.handover import run_flags

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from maskforge_workflow.lock import hold
    hold(Path(sys.argv[1]), "snakemake")
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def held_elsewhere(tmp_path):
    """A process that holds tmp_path's lock as a Snakemake run would."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_is_refused_naming_the_holder_and_dvc_is_refused_too(tmp_path, held_elsewhere):
    with pytest.raises(lock.WorkdirLocked, match=rf"pid {held_elsewhere.pid} \(snakemake: `.*python.*`\), since \d{{4}}-"):
        lock.hold(tmp_path, "snakemake")
    with pytest.raises(zc.lockfile.LockError):          # what DVC takes for every command (dvc/lock.py)
        zc.lockfile.LockFile(str(tmp_path / lock.LOCK_FILE))


def test_the_lock_is_freed_when_its_holder_is_killed(tmp_path, held_elsewhere):
    held_elsewhere.send_signal(signal.SIGKILL)
    held_elsewhere.wait()
    lock.hold(tmp_path, "snakemake")                     # no unlock step: the kernel dropped the flock
    try:
        assert (tmp_path / lock.LOCK_FILE).read_text() == f"{os.getpid()} snakemake\n"
        with pytest.raises(zc.lockfile.LockError):
            zc.lockfile.LockFile(str(tmp_path / lock.LOCK_FILE))
        with lock.lent():                                # a child DVC command takes it meanwhile
            zc.lockfile.LockFile(str(tmp_path / lock.LOCK_FILE)).close()
        assert lock.holding()
    finally:
        lock.release()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_the_next_writer_removes_a_killed_writers_temp_names_and_keeps_a_live_ones(tmp_path):
    out = tmp_path / "stores" / "seeds"
    dead, live = dead_pid(), os.getppid()
    for name in (f"seeds.tmp-{dead}", f"seeds.old-{dead}", f"seeds.tmp-{live}"):
        (out.parent / name).mkdir(parents=True)
    (out.parent / f"other.tmp-{dead}").write_text("x")
    assert temp_path(out) == out.with_name(f"seeds.tmp-{os.getpid()}")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([f"seeds.tmp-{live}", f"other.tmp-{dead}"])
    atomic_write_text(out.parent / "other", "y")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([f"seeds.tmp-{live}", "other"])


def test_leftovers_are_never_hashed_and_a_run_start_removes_them(tmp_path):
    store = tmp_path / "cam_r0"
    (store / "part-00000-of-00002").mkdir(parents=True)
    (store / "part-00000-of-00002" / "meta.json").write_text("{}")
    clean = input_digest(store)
    dead = dead_pid()
    (store / f"part-00001-of-00002.tmp-{dead}").mkdir()
    (store / f"part-00001-of-00002.tmp-{dead}" / "shard-00000.h5").write_bytes(b"half")
    (store / f"meta.json.tmp-{dead}").write_text("{")
    assert input_digest(store) == clean
    assert sorted(p.name for p in remove_leftovers(tmp_path)) == [f"meta.json.tmp-{dead}", f"part-00001-of-00002.tmp-{dead}"]
    assert [p.name for p in store.iterdir()] == ["part-00000-of-00002"]


@pytest.mark.parametrize("argv, flags", [
    (["snakemake", "--cores", "all"], set()),
    (["snakemake", "-n", "--forceall"], {"dryrun", "forceall"}),
    (["snakemake", "-nF", "-j4", "--configfile", "x.yaml"], {"dryrun", "forceall"}),
    (["snakemake", "--touch", "--dry-run=True"], {"touch", "dryrun"}),
    (["snakemake", "--forcerun", "crf", "-c", "2"], set()),
])
def test_run_flags_read_the_snakemake_command_line(argv, flags):
    assert run_flags(argv) == flags
