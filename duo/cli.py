"""The `duo` command: one sub-command per user-facing task.

Each sub-command lives next to the code it drives and registers itself through an `add_parser(subparsers)`
function; this module only assembles them, so importing the CLI stays cheap (heavy imports happen inside
the handlers).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules with an `add_parser(subparsers)` that adds sub-commands whose handler is stored as `func`.
_COMMANDS: list[str] = [
    "duo.replay",
    "duo.prepare",
    "duo.server.cli",
    "duo.audio.cli",
    "duo.training.cli",
    "duo.evaluation.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duo", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a part whose dependencies are not installed: its commands are absent
            logging.getLogger(__name__).debug("commands of %s unavailable: %s", name, exc)
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
