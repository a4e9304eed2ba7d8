"""The `maskforge` command line: `store info|diff|export|import`, `sweep`, `dvc-yaml`.

Each subcommand is one small function taking the parsed arguments; add a command group with an
`add_<group>_commands(subparsers)` function called from `build_parser()`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from maskforge.config import ConfigError
from maskforge.data.manifest import DatasetError, Manifest
from maskforge.files import atomic_write_text
from maskforge.store import (StoreError, StoreWriter, diff_stores, export_pngs, flatten, input_digest, open_store,
                             read_png)

EXIT_USER_ERROR = 2


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
        print(f"\npixel agreement (pixels labelled in either): {_cell(d['agreement'])}\n"
              f"pixels whose ignore status changed: {_cell(d['ignore_changed'])}")
    print(f"\nmost changed images ({d['most_changed_metric']})\n" + table(["id", d["most_changed_metric"]], d["most_changed"]))


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
                     inputs={"source": input_digest(source)}, classes=manifest.classes) as writer:
        for image_id in ids:
            rec = manifest.record(image_id)
            writer.add(image_id, read_png(source / f"{image_id}.png", args.kind, rec.height, rec.width))
    print(f"wrote {len(ids)} {args.kind} images to {args.out}")


def add_store_commands(commands: argparse._SubParsersAction) -> None:
    """The `maskforge store ...` group."""
    store = commands.add_parser("store", help="inspect, compare, export and import mask stores")
    sub = store.add_subparsers(dest="store_command", required=True)

    info = sub.add_parser("info", help="kind, stage, size, classes, params and inputs of a store")
    info.add_argument("path")
    info.set_defaults(func=cmd_store_info)

    diff = sub.add_parser("diff", help="per-class change, changed images and parameter diff of two stores")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--top", type=int, default=10, help="images (and ids) to list (default 10)")
    diff.set_defaults(func=cmd_store_diff)

    export = sub.add_parser("export", help="mask store → VOC palette PNGs <id>.png")
    export.add_argument("path")
    export.add_argument("out_dir")
    export.set_defaults(func=cmd_store_export)

    imp = sub.add_parser("import", help="folder of <id>.png (saliency maps or masks) → store")
    imp.add_argument("src_dir")
    imp.add_argument("out")
    imp.add_argument("--kind", required=True, choices=("saliency", "mask"))
    imp.add_argument("--manifest", required=True, help="the manifest written by the prepare stage")
    imp.add_argument("--split", default="train")
    imp.set_defaults(func=cmd_store_import)


def cmd_sweep(args: argparse.Namespace) -> None:
    from maskforge.evaluation import evaluate_cams
    from maskforge.reporting import write_csv

    with open_store(args.store, kind="cam") as store:
        summary, rows = evaluate_cams(store, Manifest.read(args.manifest), args.thresholds)
    write_csv(args.out, rows)
    print(table(["threshold", "mIoU"], [[r["threshold"], f"{r['miou']:.2f}"] for r in rows]))
    print(f"best bg_threshold {summary['bg_threshold']}: mIoU {summary['miou']:.2f} (sweep written to {args.out})")


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from maskforge.config import load_config
    from workflow.stages import render_dvc_yaml

    text = render_dvc_yaml(load_config(args.params, args.configfile))
    if args.check:
        current = open(args.out).read() if os.path.exists(args.out) else ""
        if current != text:
            raise ConfigError(f"{args.out} is stale for {args.params}; run `maskforge dvc-yaml` to regenerate it")
        return
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:
    """`maskforge sweep` and `maskforge dvc-yaml`."""
    sweep = commands.add_parser("sweep", help="score seed background thresholds on a cached CAM store (no inference)")
    sweep.add_argument("store", help="a CAM store, e.g. data/stores/cam_r0")
    sweep.add_argument("--manifest", default="data/prepared/manifest.json", help="manifest with the GT masks")
    sweep.add_argument("--thresholds", type=float, nargs="+",
                       default=[round(0.05 * i, 2) for i in range(1, 13)], help="tau values (default 0.05 ... 0.60)")
    sweep.add_argument("--out", default="metrics/sweep.csv", help="CSV of threshold, mIoU")
    sweep.set_defaults(func=cmd_sweep)
    dvc = commands.add_parser("dvc-yaml", help="regenerate dvc.yaml from the stage table and params")
    dvc.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    dvc.add_argument("--configfile", nargs="*", default=[], help="overlays merged over the params file")
    dvc.add_argument("--out", default="dvc.yaml", help="where to write (default dvc.yaml)")
    dvc.add_argument("--check", action="store_true", help="exit 2 if the file differs instead of writing it")
    dvc.set_defaults(func=cmd_dvc_yaml)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskforge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_store_commands(commands)
    add_pipeline_commands(commands)
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
