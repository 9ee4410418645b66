"""``python -m pipeline <command>``: one command line for every stage.

Each group of commands lives in its own module with a ``register(subparsers)`` function.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = (
    "pipeline.cli.recognizer",  # embed, train, evaluate
    "pipeline.cli.overlap",  # separate-overlap, uncertainty
    "pipeline.cli.clustering",  # knn, train-gcn, cluster, evaluate-clustering
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="facecurate's face pipeline: embed, train, evaluate, separate overlap, "
        "cluster and score clustering uncertainty. Every stage reads and writes .npz feature files.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
