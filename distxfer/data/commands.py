"""`distxfer data`: inspect a dataset folder, convert it to TFRecords, write the demo datasets."""

from __future__ import annotations

import argparse
import json

from distxfer.data.inspection import inspect_folder, render_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = sub.add_parser("inspect", help="counts per class, image kinds and bad files of a folder")
    p.add_argument("path", help="class folders, or a folder made by `distxfer data convert`")
    p.add_argument("--follow-links", action="store_true")
    p.add_argument("--max-bad", type=int, default=20, help="bad files to list (all are counted)")

    p = sub.add_parser(
        "convert", help="write class folders as sharded TFRecords that training can read"
    )
    p.add_argument("src", help="class folders")
    p.add_argument("out", help="new folder for the TFRecord shards and meta.json")
    p.add_argument(
        "--shards", type=int, help="training shard files (default: one per ~128 MB, at least 16)"
    )
    p.add_argument(
        "--val-split", type=float, default=0.0, help="fraction per class written as a val split"
    )
    p.add_argument("--test-dir", help="class folders written as a test split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scan", choices=["quick", "full", "off"], default="quick")
    p.add_argument("--bad-files", choices=["error", "skip"], default="error")
    p.add_argument("--follow-links", action="store_true")

    p = sub.add_parser("demo", help="write the built-in demo datasets (source and target tasks)")
    p.add_argument("out", nargs="?", default="runs/demo/data")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if args.data_command == "inspect":
        print(
            render_report(
                inspect_folder(args.path, follow_links=args.follow_links), max_bad=args.max_bad
            )
        )
    elif args.data_command == "convert":
        from distxfer.data.tfrecords import convert_to_tfrecords

        meta = convert_to_tfrecords(
            args.src,
            args.out,
            shards=args.shards,
            val_split=args.val_split,
            seed=args.seed,
            test_dir=args.test_dir,
            follow_links=args.follow_links,
            scan=args.scan,
            bad_files=args.bad_files,
        )
        counts = {name: split["count"] for name, split in meta["splits"].items()}
        print(
            f"wrote {json.dumps(counts)} records of {len(meta['class_names'])} classes to"
            f" {args.out}; train with data.train_dir={args.out}"
        )
    else:
        from distxfer.demo import write_demo_data

        paths = write_demo_data(args.out, seed=args.seed)
        for name, path in vars(paths).items():
            print(f"{name}: {path}")
    return 0
