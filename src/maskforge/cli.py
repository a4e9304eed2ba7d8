"""The `maskforge` command line: stores, CAM sweeps, reports, and the workflow's commands.

`store info|diff|export|import`, `sweep`, `report` and `quality` live here; the command groups other installed
packages register come next (the workflow package adds `dvc-yaml`, `grid` and `handover`).

Each subcommand is one small function taking the parsed arguments; add a command group with an
`add_<group>_commands(subparsers)` function called from `build_parser()`, or, from another
package, with an entry point in the `maskforge.commands` group naming such a function. The core
library never imports the workflow code: it only loads what the entry points name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from maskforge.atomic import atomic_write_text
from maskforge.config import ConfigError
from maskforge.data.manifest import DatasetError, Manifest
from maskforge.leaderboard import run_labels
from maskforge.store import META, StoreError, StoreWriter, input_digest, open_store
from maskforge.store_diff import diff_stores, flatten
from maskforge.store_parts import PART
from maskforge.store_png import export_pngs, read_png

EXIT_USER_ERROR = 2
SWEEP_THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)]   # maskforge sweep's τ: 0.05 … 0.95
COMMAND_GROUP = "maskforge.commands"   # entry points: functions(subparsers) adding command groups


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as left-aligned plain-text columns under `headers`."""
    cells = [[str(c) for c in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def cmd_store_info(args: argparse.Namespace) -> None:
    """Print a store's provenance: kind, stage, sizes, classes, params, inputs."""
    with open_store(args.path) as store:
        meta = store.meta
        print(table(["field", "value"], [
            ("path", store.path), ("kind", store.kind), ("stage", meta["stage"]),
            ("images", len(store)), ("shards", len(meta["shards"])),
            ("classes", f"{len(store.classes)}: {', '.join(store.classes)}"),
            ("code_version", meta["code_version"]), ("params_sha256", meta["params_sha256"]),
        ]))
        print("\nparams\n" + table(["key", "value"], [(k, json.dumps(v, sort_keys=True)) for k, v in flatten(store.params).items()]))
        print("\ninputs\n" + table(["name", "sha256"], sorted(meta["inputs"].items())))


def cmd_store_diff(args: argparse.Namespace) -> None:
    """Print how store B differs from store A: ids, provenance, per-class change, top images."""
    with open_store(args.a) as a, open_store(args.b) as b:
        d = diff_stores(a, b, top=args.top)
        if args.html:
            from maskforge.viz import store_diff_html
            manifest = Manifest.read(args.manifest) if args.manifest and os.path.exists(args.manifest) else None
            atomic_write_text(args.html, store_diff_html(d, a, b, manifest))
    print(f"A: {args.a}\nB: {args.b}\n{d['kind']} stores: {d['common']} common ids, "
          f"{len(d['only_a'])} only in A, {len(d['only_b'])} only in B")
    for side, label in (("only_a", "only in A"), ("only_b", "only in B")):
        if d[side]:
            more = f" (+{len(d[side]) - args.top} more)" if len(d[side]) > args.top else ""
            print(f"{label}: {', '.join(d[side][: args.top])}{more}")
    for section in ("provenance", "params", "inputs"):
        rows = d[section]
        print(f"\n{section} differences" + (f"\n{table(['key', 'A', 'B'], rows)}" if rows else ": none"))
    print(f"\nper class ({d['per_class_metric']})\n" + table(["class", d["per_class_metric"]], d["per_class"].items()))
    if d["kind"] == "mask":
        print(f"\npixel agreement (pixels labelled in either, %): {_cell(d['agreement'])}\n"
              f"pixels whose ignore status changed (%): {_cell(d['ignore_changed'])}")
    print(f"\nmost changed images ({d['most_changed_metric']})\n" + table(["id", d["most_changed_metric"]], d["most_changed"]))
    if args.html:
        print(f"\nwrote {args.html}")


def cmd_store_export(args: argparse.Namespace) -> None:
    """Write a mask store as VOC palette PNGs."""
    with open_store(args.path) as store:
        count = export_pngs(store, args.out_dir)
    print(f"wrote {count} PNGs to {args.out_dir}")


def cmd_store_import(args: argparse.Namespace) -> None:
    """Read `<id>.png` for every id of a manifest split into a new saliency or mask store."""
    manifest = Manifest.read(args.manifest)
    ids = manifest.ids(args.split)
    source = Path(args.src_dir)
    missing = [i for i in ids if not (source / f"{i}.png").is_file()]
    if missing:
        raise StoreError(f"{source / (missing[0] + '.png')}: missing ({len(missing)} of {len(ids)} {args.split} ids"
                         f" have no PNG) — add the maps or pass the right folder/--split")
    with StoreWriter(args.out, kind=args.kind, stage="import", params={"source": args.src_dir, "kind": args.kind},
                     inputs={"source": input_digest(source)}, manifest=manifest.sha256,
                     classes=manifest.classes) as writer:
        for image_id in ids:
            rec = manifest.record(image_id)
            writer.add(image_id, read_png(source / f"{image_id}.png", args.kind, rec.height, rec.width))
    print(f"wrote {len(ids)} {args.kind} images to {args.out}")


def add_store_commands(commands: argparse._SubParsersAction) -> None:
    """The `maskforge store ...` group."""
    store = commands.add_parser("store", help="inspect, compare, export and import mask stores",
                                description="Inspect, compare, export and import the stores under data/stores/.")
    sub = store.add_subparsers(dest="store_command", required=True)

    info = sub.add_parser("info", help="kind, stage, size, classes, params and inputs of a store",
                          description="Print a store's provenance: kind, stage, images, classes, params and input hashes.")
    info.add_argument("path", help="a store folder, e.g. data/stores/seeds")
    info.set_defaults(func=cmd_store_info)

    diff = sub.add_parser("diff", help="per-class change, changed images and parameter diff of two stores",
                          description="How store B differs from store A: ids, provenance and params, per-class IoU "
                                      "(masks) or agreement, and the images that changed most. IoU in %, as in the report.")
    diff.add_argument("a", metavar="A", help="the reference store, e.g. data/stores/seeds")
    diff.add_argument("b", metavar="B", help="the store compared with it, e.g. another checkout's data/stores/seeds")
    diff.add_argument("--top", type=int, default=10, help="images (and ids) to list (default 10)")
    diff.add_argument("--html", metavar="FILE", help="also write an offline HTML page with the most changed images")
    diff.add_argument("--manifest", default="data/prepared/manifest.json",
                      help="manifest for images and GT on the HTML page (default data/prepared/manifest.json; skipped if absent)")
    diff.set_defaults(func=cmd_store_diff)

    export = sub.add_parser("export", help="mask store → VOC palette PNGs <id>.png",
                            description="Write every image of a mask store as a VOC palette PNG <id>.png.")
    export.add_argument("path", help="a mask store, e.g. data/stores/irn")
    export.add_argument("out_dir", help="folder to write the PNGs to (created if missing)")
    export.set_defaults(func=cmd_store_export)

    imp = sub.add_parser("import", help="folder of <id>.png (saliency maps or masks) → store",
                         description="Read <id>.png for every id of a manifest split (saliency maps, 8-bit grey, "
                                     "or index masks) into a new store.")
    imp.add_argument("src_dir", help="folder holding <id>.png for every id of the split")
    imp.add_argument("out", help="the store to write, e.g. data/stores/my_saliency")
    imp.add_argument("--kind", required=True, choices=("saliency", "mask"), help="what the PNGs hold")
    imp.add_argument("--manifest", required=True, help="the manifest written by the prepare stage")
    imp.add_argument("--split", default="train", help="which manifest split's ids to read (default train)")
    imp.set_defaults(func=cmd_store_import)


def cmd_sweep(args: argparse.Namespace) -> None:
    from maskforge.evaluation import evaluate_cams
    from maskforge.metric_files import write_csv

    manifest = Manifest.read(args.manifest)
    with open_store(args.store, kind="cam", manifest=manifest) as store:
        summary, rows = evaluate_cams(store, manifest, args.thresholds)
    write_csv(args.out, rows)
    print(table(["threshold", "mIoU"], [[r["threshold"], f"{r['miou']:.2f}"] for r in rows]))
    print(f"best bg_threshold {summary['bg_threshold']}: mIoU {summary['miou']:.2f} (sweep written to {args.out})")


def _run_outputs(args: argparse.Namespace, manifest: Manifest | None) -> tuple[dict, dict]:
    """The stores (checked against `manifest`, if given) and metrics summaries named by --stores/--metrics
    (default: all of them on disk; a store written in parts opens whole), keyed by `run_labels`."""
    found = (p.parent.parent if PART.match(p.parent.name) else p.parent for p in Path("data/stores").glob(f"**/{META}"))
    paths = args.stores or sorted(set(found))
    stores = {label: open_store(p, manifest=manifest) for label, p in zip(run_labels(paths), paths)}
    metrics = args.metrics or sorted(Path("metrics").glob("**/*.json"))
    summaries = {label: json.loads(Path(p).read_text()) for label, p in zip(run_labels(metrics), metrics)}
    return stores, summaries


def cmd_report(args: argparse.Namespace) -> None:
    """Write the HTML report (and its plots) of the stores, metrics and curve files on disk (default: all of them)."""
    from maskforge.viz import write_report

    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    stores, summaries = _run_outputs(args, manifest)
    curves = args.curves if args.curves is not None else sorted(Path("metrics").glob("**/*.csv"))
    plots = Path(args.out).parent / "plots"
    warnings = write_report(args.out, plots, manifest, stores, summaries, curves, args.images, args.thumbnail)
    print(f"wrote {args.out} and {plots}/: {len(stores)} stores, {len(summaries)} metrics files, {len(curves)} curves")
    for warning in warnings:
        print(f"WARNING {warning}")


def cmd_quality(args: argparse.Namespace) -> None:
    """Print the quality table of the scored stores on disk (the report's quality section)."""
    from maskforge.quality import HEADERS, quality_rows

    manifest_path = Path(args.prepared) / "manifest.json"      # the table needs no images: checked if present
    stores, summaries = _run_outputs(args, Manifest.read(manifest_path) if manifest_path.exists() else None)
    rows = quality_rows(stores, summaries)
    if not rows:
        raise StoreError("no store has a score: run the evaluate stages first (snakemake / dvc repro), "
                         "or name stores and metrics with --stores and --metrics")
    print(table(HEADERS, [[f"{c:.2f}" if isinstance(c, float) else ("–" if c is None else c) for c in r.cells()]
                          for r in rows]))
    print("GT: the column compares against pixel ground truth (a user's dataset has none); "
          "labelled % and foreground % are read from the store alone (mask stores).")


def _add_run_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", default="data/prepared", help="the prepare stage's folder (images, GT)")
    parser.add_argument("--stores", nargs="*", help="stores to show (default: every store under data/stores)")
    parser.add_argument("--metrics", nargs="*", help="metrics JSON files (default: metrics/**/*.json)")


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:
    """`maskforge sweep`, `maskforge report` and `maskforge quality`."""
    sweep = commands.add_parser("sweep", help="score seed background thresholds on a cached CAM store (no inference)",
                                description="Seeds at every background threshold τ from one pass over a cached CAM "
                                            "store, each scored against GT (mIoU %); prints the table and the best τ.")
    sweep.add_argument("store", help="a CAM store, e.g. data/stores/cam_r0")
    sweep.add_argument("--manifest", default="data/prepared/manifest.json", help="manifest with the GT masks")
    sweep.add_argument("--thresholds", type=float, nargs="+", default=SWEEP_THRESHOLDS,
                       help="τ values (default 0.05, 0.10 … 0.95: wider than the pipeline's evaluate.thresholds, 0.05 … 0.80)")
    sweep.add_argument("--out", default="metrics/sweep.csv", help="CSV of threshold, mIoU (default metrics/sweep.csv)")
    sweep.set_defaults(func=cmd_sweep)
    report = commands.add_parser("report", help="offline HTML page: metrics, plots and galleries of every store",
                                 description="Write the offline HTML report of the stores, metrics and curves on disk "
                                             "(as the pipeline's report stage does), its plots as PNGs beside it in plots/.")
    _add_run_output_arguments(report)
    report.add_argument("--curves", nargs="*", help="training curve and sweep CSVs to plot (default: metrics/**/*.csv)")
    report.add_argument("--images", type=int, default=6, help="gallery rows per split (default 6)")
    report.add_argument("--thumbnail", type=int, default=160, help="picture size in pixels (default 160)")
    report.add_argument("--out", default="reports/adhoc/index.html",
                        help="where to write, plots in plots/ beside it (default reports/adhoc/index.html: the "
                             "pipeline's own reports/index.html is an output the engines track)")
    report.set_defaults(func=cmd_report)
    quality = commands.add_parser("quality", help="table of every scored store: mIoU, precision/recall, labelled share, "
                                  "ratio to its input store",
                                  description="Print the report's quality table: for every scored store (chain order) "
                                              "mIoU, class-mean precision/recall of labelled pixels (GT), labelled and "
                                              "foreground shares (from the store alone) and the ratio to its input store.")
    _add_run_output_arguments(quality)
    quality.set_defaults(func=cmd_quality)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskforge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_store_commands(commands)
    add_pipeline_commands(commands)
    for entry_point in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        entry_point.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print `maskforge: <message>` and return 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (StoreError, DatasetError, ConfigError) as e:
        print(f"maskforge: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
