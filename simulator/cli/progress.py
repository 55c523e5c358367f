"""One progress behaviour for every long command (`run`, `gps`, `sweep`).

On a terminal: a tqdm bar with ETA on stderr. Otherwise (a log file, CI, a pipe): no carriage
returns, a plain line every `LINE_EVERY_S` seconds (`sweep: 12/40 runs (30%), 61 s, ETA 142 s`),
so logs stay readable and short runs stay silent. `--quiet` silences it; `--progress` /
`--no-progress` force the bar on or off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

LINE_EVERY_S = 10.0


def add_progress_arguments(parser, quiet_help: str = "print nothing but errors") -> None:
    import argparse

    if not any("--quiet" in action.option_strings for action in parser._actions):
        parser.add_argument("--quiet", action="store_true", help=quiet_help)
    if not any("--progress" in action.option_strings for action in parser._actions):
        parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="progress bar on stderr (default: a bar on a terminal, a line "
                                 f"every {LINE_EVERY_S:g} s otherwise; none with --quiet)")


def progress_from_args(args) -> Callable[..., Progress]:
    """The progress factory the options ask for (see the module docstring)."""
    wanted = getattr(args, "progress", None)
    quiet = getattr(args, "quiet", False)
    if wanted is False or (quiet and wanted is None):
        mode = "off"
    elif wanted is True or sys.stderr.isatty():
        mode = "bar"
    else:
        mode = "lines"

    def make(iterable: Iterable | None = None, *, total: int, desc: str, unit: str = "it",
             **_: Any) -> Progress:
        return Progress(iterable, total, desc, unit, mode)

    return make


class Progress:
    """tqdm's interface as far as moesim uses it: iterate, update(n), close(), a context."""

    def __init__(self, iterable: Iterable | None, total: int, desc: str, unit: str, mode: str):
        self.iterable, self.total, self.desc, self.unit, self.mode = iterable, total, desc, unit, mode
        self.n = 0
        self._started = time.perf_counter()
        self._last_line = self._started
        self._bar = None
        self._printed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.mode == "bar":
            if self._bar is None:  # created on the first step: no bar before an early error
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, file=sys.stderr)
                self._bar.update(self.n)
            else:
                self._bar.update(n)
        elif self.mode == "lines":
            now = time.perf_counter()
            if now - self._last_line >= LINE_EVERY_S or (self._printed and self.n >= self.total):
                self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._started
        share = self.n / self.total if self.total else 1.0
        eta = f", ETA {elapsed / share - elapsed:.0f} s" if 0 < share < 1 else ""
        plural = self.unit if self.unit.endswith("s") or self.total == 1 else f"{self.unit}s"
        print(f"{self.desc}: {self.n}/{self.total} {plural} ({100 * share:.0f}%), "
              f"{elapsed:.0f} s{eta}", file=sys.stderr, flush=True)
        self._last_line, self._printed = now, True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
