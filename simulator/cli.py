"""The `moesim` command line: one subcommand per module in `simulator.commands`.

Each subcommand module exposes ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input (any of `simulator.errors.USER_ERRORS`, a missing file) becomes one line on stderr
and exit status 2, never a traceback.
"""

import argparse
import importlib
import sys

from simulator.errors import USER_ERRORS

# subcommand name -> module under simulator.commands (imported lazily so `moesim --help` is fast)
COMMANDS = {
    "run": "run",
    "validate": "validate",
    "collective": "collective",
    "kernel": "kernel",
    "trace": "trace",
    "gps": "gps",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moesim", description="Discrete-event simulator for Mixture-of-Experts on GPU clusters."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"simulator.commands.{module_name}")
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as error:
        print(f"moesim: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"moesim: error: {error.filename}: no such file", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
