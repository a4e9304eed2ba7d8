"""The commands that drive the workflow engines: `maskforge dvc-yaml`, `grid` and `handover`.

Registered with the `maskforge` console script through the `maskforge.commands` entry point
(pyproject.toml), so the core library's command line reaches them without importing this package.
"""

from __future__ import annotations

import argparse
import os

from maskforge.atomic import atomic_write_text
from maskforge.cli import table
from maskforge.config import ConfigError, load_config
from maskforge_workflow.dvc_yaml import render_dvc_yaml


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    text = render_dvc_yaml(load_config(args.params, args.configfile))
    if args.check:
        current = open(args.out).read() if os.path.exists(args.out) else ""
        if current != text:
            raise ConfigError(f"{args.out} is stale for {args.params}; run `maskforge dvc-yaml` to regenerate it")
        return
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")


def cmd_grid(args: argparse.Namespace) -> None:
    """Rerun one stage over a parameter grid on the cached upstream stores and rank the results."""
    from maskforge.metric_files import write_csv
    from maskforge_workflow.grid import parse_grid, run_grid

    rows = run_grid(load_config(args.params, args.configfile), args.stage, parse_grid(args.set), args.source)
    keys = [k for k in rows[0] if k not in ("miou", "labelled_fraction", "store")]
    print(table([*keys, "mIoU", "labelled", "store"],
                [[*(r[k] for k in keys), f"{r['miou']:.2f}", f"{100 * r['labelled_fraction']:.1f}%", r["store"]] for r in rows]))
    if args.out:
        write_csv(args.out, rows)
        print(f"wrote {args.out}")


def cmd_handover(args: argparse.Namespace) -> None:
    from pathlib import Path

    from maskforge_workflow.handover import HandoverError, adopt_for_snakemake, record_for_dvc
    from maskforge_workflow.lock import WorkdirLocked, hold

    config = load_config(args.params)
    try:
        hold(Path("."), "maskforge handover")
        print(record_for_dvc(config) if args.to == "dvc" else adopt_for_snakemake(config, cores=args.cores))
    except (HandoverError, WorkdirLocked) as e:
        raise ConfigError(str(e)) from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--params and --configfile: the config a command works with, as Snakemake would merge it."""
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays merged over the params file")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`maskforge dvc-yaml`, `maskforge grid` and `maskforge handover` (the entry point)."""
    dvc = commands.add_parser("dvc-yaml", help="regenerate dvc.yaml from the stage table and params",
                              description="Write dvc.yaml from the stage table for the params (after changing "
                                          "ae.rounds, cam.infer.shards, cam.method or compare); --check only compares.")
    add_config_arguments(dvc)
    dvc.add_argument("--out", default="dvc.yaml", help="where to write (default dvc.yaml)")
    dvc.add_argument("--check", action="store_true", help="exit 2 if the file differs instead of writing it")
    dvc.set_defaults(func=cmd_dvc_yaml)
    grid = commands.add_parser(
        "grid", help="rerun one stage over a params grid on cached upstream stores and rank by mIoU",
        description="Rerun STAGE for every combination of the --set values, reading its upstream stores as "
                    "the pipeline left them (nothing upstream or downstream runs), and score each result against "
                    "GT. Results are kept in data/sweeps/<job>/<combination>/ and reused by later grids. "
                    "Example: maskforge grid crf --source seeds --set crf.bilateral_srgb=3,5,7 --set crf.gt_prob=0.6,0.7")
    grid.add_argument("stage", help="a stage that writes a mask store: seeds, assemble_ae, crf, ir_labels, refine_irn, ...")
    grid.add_argument("--source", help="which input for stages with several (crf: seeds or assemble_ae)")
    grid.add_argument("--set", action="append", required=True, metavar="KEY=V1,V2",
                      help="a params key and its values (repeat for a product grid)")
    add_config_arguments(grid)
    grid.add_argument("--out", metavar="CSV", help="also write the ranked rows as CSV")
    grid.set_defaults(func=cmd_grid)
    handover = commands.add_parser(
        "handover", help="hand the outputs of one engine to the other",
        description="--to dvc: `dvc commit -f` the stages whose outputs Snakemake (re)wrote (the Snakefile's "
                    "onsuccess does this after each run with params.yaml). --to snakemake: once `dvc status` is "
                    "clean, let Snakemake record the outputs DVC wrote (a Snakemake run does this itself before it "
                    "starts, and recomputes what DVC does not vouch for). Run in the project root.")
    handover.add_argument("--to", required=True, choices=("dvc", "snakemake"), help="the engine that takes over")
    handover.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    handover.add_argument("--cores", type=int, default=1, help="cores for `snakemake --touch` (default 1)")
    handover.set_defaults(func=cmd_handover)
