"""What every stage module shares: arguments from the stage table, params, one-line errors.

A stage's command line is `--params-json JSON` (Snakemake passes the merged, validated config's
keys for the stage) or `--params-file params.yaml [--variant NAME]` (DVC), then one `--name PATH` per input and
output named in the stage table (maskforge_workflow). Known errors end the process with one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from maskforge.checkpoint import CheckpointError
from maskforge.config import ConfigError, canonical_json, load_config, select_keys, validate_selection, variant_config
from maskforge.data.manifest import DatasetError
from maskforge.store import StoreError
from maskforge.store_parts import PART
from maskforge_workflow.table import params_keys, stage_of_module


# Intra-op threads of every stage's torch work. CPU kernels (oneDNN convolution forward and
# backward, and PyTorch's own without oneDNN) split their reductions by thread count, so weights
# and CAMs differed in the last bits between OMP_NUM_THREADS=1 and 2 (measured: stem conv output
# 1e-5 apart; stores and checkpoints not byte-identical) and between engines (Snakemake sets
# OMP_NUM_THREADS to a job's threads). One fixed count fixes the reduction order: same bytes
# whatever the machine's thread settings; parallelism comes from jobs (e.g. cam.infer.shards).
TORCH_THREADS = 1


def fix_torch_threads() -> None:
    """TORCH_THREADS for the stage's torch work: set now when torch is loaded, else through the
    environment torch reads when it is imported later (stages without a model never load it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(TORCH_THREADS)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(TORCH_THREADS)


def parse_stage_args(module_name: str, doc: str | None, argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse a stage's arguments (named after its table entry) and load exactly its params keys;
    fixes torch's thread count (TORCH_THREADS)."""
    fix_torch_threads()
    stage = stage_of_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m {module_name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--params-json", help="the stage's params as JSON (how Snakemake passes them)")
    source.add_argument("--params-file", default="params.yaml", help="read params from this file (default: params.yaml)")
    parser.add_argument("--variant", help="with --params-file: apply this compare variant's overrides (how DVC runs a variant)")
    for name in stage.deps:
        parser.add_argument(f"--{name}", required=True, nargs="+", help=f"input: {stage.deps[name]} (or its parts)")
    for name in stage.later_round_deps:
        parser.add_argument(f"--{name}", nargs="?", default=None,
                            help=f"input for rounds > 0: {stage.later_round_deps[name]}")
    for name in stage.collects:
        parser.add_argument(f"--{name}", nargs="+", required=True, help=f"inputs: every {stage.collects[name]} of the graph")
    for name in stage.outs:
        parser.add_argument(f"--{name}", required=True, help=f"output: {stage.outs[name]}")
    if stage.parts:
        parser.add_argument("--part", type=int, help=f"write only this part (0-based) of the {stage.parts} parts; "
                                                     "--store is then the part's folder <store>/part-<i>-of-<n>")
    args = parser.parse_args(argv)
    for name in stage.deps:
        paths = whole_stores(getattr(args, name))
        if len(paths) != 1:
            parser.error(f"--{name}: one input, or the parts of one store (got {' '.join(paths)})")
        setattr(args, name, paths[0])
    for name in stage.collects:
        setattr(args, name, whole_stores(getattr(args, name)))
    if args.params_json is not None:
        if args.variant:
            parser.error("--variant applies to --params-file (--params-json already holds the variant's values)")
        try:
            params = json.loads(args.params_json)
        except json.JSONDecodeError:
            raise ConfigError(f"{stage.name}: --params-json is not valid JSON") from None
        try:
            exact = select_keys(params, params_keys(stage.params, params)) == params
        except ConfigError:
            exact = False
        if not exact:
            raise ConfigError(f"{stage.name}: --params-json must hold exactly the keys {list(stage.params)}")
        validate_selection(params, f"{stage.name} --params-json")
    else:
        config = load_config(args.params_file)
        own = variant_config(config, args.variant) if args.variant else config
        params = select_keys(own, params_keys(stage.params, own))
    params = json.loads(canonical_json(params))   # one key order whichever engine passed them: same bytes in stores and checkpoints
    for name in stage.outs:
        Path(getattr(args, name)).parent.mkdir(parents=True, exist_ok=True)   # DVC does not create them
    print(start_line(stage.name, args, [*stage.deps, *stage.later_round_deps, *stage.collects], list(stage.outs)),
          flush=True)
    return args, params


def start_line(name: str, args: argparse.Namespace, inputs: Sequence[str], outputs: Sequence[str]) -> str:
    """The line a job starts with on the console and in its log: `== seeds: cams data/stores/cam_r0
    -> store data/stores/seeds` (a list of inputs is summarised by its count)."""
    def named(keys: Sequence[str]) -> str:
        values = [(k, getattr(args, k)) for k in keys if getattr(args, k)]
        return ", ".join(f"{k} {v}" if isinstance(v, str) else f"{k} ({len(v)} files)" for k, v in values)
    part = f" part {args.part}" if getattr(args, "part", None) is not None else ""
    variant = f" [variant {args.variant}]" if args.variant else ""
    return f"== {name}{part}{variant}: {named(inputs) or 'no inputs'} -> {named(outputs)}"


def whole_stores(paths: Sequence[str]) -> list[str]:
    """Paths with the parts of a store (`<store>/part-<i>-of-<n>`, as the engines list them as
    dependencies) replaced by the store itself, in order."""
    wholes = [str(Path(p).parent) if PART.match(Path(p).name) else p for p in paths]
    return list(dict.fromkeys(wholes))


def run_stage(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a stage's main; known input errors print one line (file and fix) and exit 2."""
    try:
        main(argv)
    except (ConfigError, DatasetError, StoreError, CheckpointError) as exc:
        print(f"maskforge: {exc}", file=sys.stderr)
        sys.exit(2)
