# Config validation first, then the engine hand-over. Everything about the graph comes from the
# stage table (src/maskforge_workflow/table.py); the rules are written from it in stages.smk.
import sys

# The checkout's own code: the workflow package (stage table, hand-over) and the stage modules.
sys.path[:0] = [f"{workflow.basedir}/src", workflow.basedir]

from snakemake.utils import validate

from maskforge.config import SCHEMA_PATH, check_ordered_pairs
from maskforge.data.fingerprint import write_fingerprint
from maskforge.store import check_existing
from maskforge_workflow.expand import final_targets, jobs
from maskforge_workflow.rules import snakemake_rules
from maskforge_workflow.handover import record_for_dvc, start_snakemake_run

validate(config, str(SCHEMA_PATH))
check_ordered_pairs(config, "config")   # what the schema cannot say: [low, high] pairs in order
# Snakemake compares mtimes only: the dataset's content hash, rewritten only when it changes, is
# prepare's input, so an edited mask, image, split list or label file reruns prepare.
write_fingerprint(config["dataset"])
# A damaged store (a truncated shard) is found now, before any job deletes the outputs downstream of it.
if not (workflow.dag_settings and workflow.dag_settings.forceall):
    check_existing([job.outs["store"] for job in jobs(config) if job.stage.store_kind])

# A real run takes the working directory's lock (shared with DVC) and clears what killed runs left;
# outputs that DVC (or anything else) wrote are adopted when `dvc status` vouches for them, else
# recomputed. Only the main process: jobs on a cluster parse this file too.
if workflow.is_main_process:
    done = start_snakemake_run(config, sys.argv)
    if done:
        print(f"maskforge handover: {done}", file=sys.stderr)


onsuccess:
    # Record what Snakemake wrote in dvc.lock, so `dvc status`/`dvc repro` agree (only for params.yaml runs).
    try:
        print(f"maskforge handover: {record_for_dvc(config)}")
    except Exception as exc:   # the outputs are complete; only their record for DVC is missing
        print(f"maskforge handover: NOT recorded for DVC ({exc}); run `maskforge handover --to dvc`", file=sys.stderr)
