"""The `moesim` command line: one subcommand per module in `simulator.cli`.

Each subcommand module exposes ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input (any of `simulator.errors.USER_ERRORS`, a missing file) becomes one line on stderr
and exit status 2, never a traceback.
"""

import argparse
import importlib
import sys

from simulator.errors import USER_ERRORS

# subcommand name -> module under simulator.cli (imported lazily so `moesim --help` is fast)
COMMANDS = {
    "run": ("run", "simulate a scenario; write summary.json, iterations.csv and timeline.json"),
    "validate": ("validate", "check a scenario without simulating it"),
    "gps": ("gps", "sweep prediction strategies x balancers and recommend the fastest (MoE-GPS)"),
    "sweep": ("sweep", "run a grid of scenario variants in parallel, resumably"),
    "plot": ("plot", "draw the figures of a result directory"),
    "compare": ("compare", "compare result directories side by side"),
    "collective": ("collective", "nccl-tests for the simulated cluster"),
    "kernel": ("kernel", "one kernel's time on the compute model"),
    "trace": ("trace", "generate, inspect, record and convert routing traces"),
    "forecast": ("forecast", "forecast expert load over training steps"),
    "calibrate": ("calibrate", "fit catalogue entries to your nccl-tests logs and kernel timings"),
    "validate-hw": ("validate_hw", "compare simulated collectives and kernels with published measurements"),
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``moesim run: error: the following arguments are required:
    --out (moesim run --help lists the options)``), not argparse's 3-4 lines of usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported (all of them when None, e.g. for --help)."""
    parser = OneLineParser(
        prog="moesim", description="Discrete-event simulator for Mixture-of-Experts on GPU clusters."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=summary)
            continue
        module = importlib.import_module(f"simulator.cli.{module_name}")
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
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
