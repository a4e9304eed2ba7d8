"""The Snakefile's rules, one per stage and variant (workflow/rules/stages.smk writes a `rule:`
from each): outputs, log and benchmark as wildcard templates, inputs looked up per job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from maskforge.config import get_key, variant_config
from maskforge.data.fingerprint import FINGERPRINT, dataset_paths
from maskforge.store_parts import part_name
from maskforge_workflow.codedeps import code_files
from maskforge_workflow.expand import VARIANT_SEPARATOR, Job, jobs, params_json, variant_path
from maskforge_workflow.table import BENCHMARKS, LOGS, STAGES, Stage

def shell_command(stage: Stage, parted: bool) -> str:
    """The Snakemake `shell:` of a rule: same arguments as the DVC cmd, params as JSON; the output
    goes to the log and the console (Snakemake runs it under `set -o pipefail`)."""
    args = [f"--{k} {{input.{k}}}" for k in {**stage.deps, **stage.later_round_deps, **stage.collects}]
    args += [f"--{k} {{output.{k}}}" for k in stage.outs]
    args += ["--part {wildcards.part}"] if parted else []
    return " ".join([f"python -m {stage.module}", "--params-json {params.values:q}", *args, "2>&1 | tee {log}"])   # log and console


@dataclass(frozen=True)
class Rule:
    """One Snakemake rule: the jobs of one stage in one variant, with wildcards for rounds, sources,
    stores and parts (workflow/rules/stages.smk writes a `rule:` from each)."""
    name: str
    stage: Stage
    outputs: Mapping[str, str]                 # --name → path template
    log: str
    benchmark: str
    params: str                                # the stage's params as canonical JSON
    wildcard_constraints: Mapping[str, str]    # each wildcard: exactly the values of this rule's jobs
    threads: int                               # at most --cores locally; the profile's set-threads overrides it
    shell: str
    by_wildcards: Mapping[tuple[tuple[str, str], ...], Job]
    dataset: tuple[str, ...]                   # the dataset fingerprint file, if the stage reads dataset files

    def inputs(self, wildcards: Mapping[str, str]) -> dict[str, str | list[str]]:
        """The job's inputs by name (Snakemake input function): code files, then the table's
        inputs; a later-round input is empty in round 0."""
        job = self.by_wildcards[tuple(sorted(dict(wildcards.items()).items()))]
        named: dict[str, str | list[str]] = {"code": code_files(self.stage), "dataset": list(self.dataset)}
        named.update({k: [] for k in self.stage.later_round_deps})
        named.update({k: v if isinstance(v, str) else list(v) for k, v in job.deps.items()})
        named.update({k: list(v) for k, v in job.collected.items()})
        return named


def snakemake_rules(config: Mapping[str, Any]) -> list[Rule]:
    """The Snakefile's rules for `config`: one per stage and variant that has jobs."""
    grouped: dict[tuple[str, str], list[Job]] = {}
    for job in jobs(config):
        grouped.setdefault((job.variant, job.stage.name), []).append(job)
    rules = []
    for (variant, name), members in grouped.items():
        stage, own = STAGES[name], variant_config(config, variant) if variant else config
        count = get_key(own, stage.parts) if stage.parts else 1
        outputs = {k: variant_path(v, variant) for k, v in stage.outs.items()}
        if count > 1:
            outputs["store"] = f"{outputs['store']}/{part_name(0, count).replace('00000', '{part}', 1)}"
        job_name = stage.dvc_name + ("_p{part}" if count > 1 else "")
        values = {w: sorted({job.wildcards[w] for job in members}) for w in members[0].wildcards}
        rules.append(Rule(
            name=f"{variant}{VARIANT_SEPARATOR}{name}" if variant else name,
            stage=stage,
            outputs=outputs,
            log=variant_path(f"{LOGS}/{job_name}.log", variant),
            benchmark=variant_path(f"{BENCHMARKS}/{job_name}.tsv", variant),
            params=params_json(stage, own),
            wildcard_constraints={w: "|".join(re.escape(v) for v in vs) for w, vs in values.items()},
            threads=stage.threads if isinstance(stage.threads, int) else get_key(own, stage.threads),
            shell=shell_command(stage, parted=count > 1),
            by_wildcards={tuple(sorted(job.wildcards.items())): job for job in members},
            dataset=(FINGERPRINT,) if stage.reads_dataset and dataset_paths(own["dataset"]) else (),
        ))
    return rules
