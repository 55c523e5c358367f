"""One `--out` preparation for every command, and result directories replaced all at once.

Every command that writes checks its `--out` the same way *before* it spends minutes computing:
a file where a directory is expected (or the reverse), a parent that is a file, a FIFO, or a
directory of someone else's files is one ScenarioError naming ``--out``.

A result directory (``moesim run``, ``gps``, ``forecast``) is written into a temporary sibling
and swapped into place with one ``renameat2(RENAME_EXCHANGE)`` (Linux), so a reader sees the
old directory or the new one, never summary.json from one run beside timeline.json of another;
where the exchange is unavailable, two renames with the old copy kept aside until the new one is
in place. Temporaries left by a killed run are removed by the next one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simulator.errors import ScenarioError

# what a result directory may hold besides the files this run writes (older or richer runs)
GENERATED_SUFFIXES = (".json", ".csv", ".png", ".svg", ".pdf", ".gz", ".npz", ".md", ".txt")
GENERATED_DIRS = ("plots",)
_RENAME_EXCHANGE = 2


def check_out_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` as a file to (over)write: not a directory, not a FIFO/device, parent creatable."""
    path = Path(path)
    if str(path) in ("", "."):
        raise ScenarioError("needs a file name", option)
    if path.is_dir():
        raise ScenarioError(f"{path} is a directory; give a file name (e.g. {path}/out.npz)", option)
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise ScenarioError(f"{path} exists and is not a regular file", option)
    _check_parent(path, option)
    return path


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` as a directory to write into: not a file, and every existing ancestor a directory."""
    path = Path(path)
    if str(path) == "":
        raise ScenarioError("needs a directory name", option)
    if path.exists() and not path.is_dir():
        raise ScenarioError(f"{path} exists and is not a directory; give a directory name", option)
    _check_parent(path, option)
    return path


def make_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """check_out_dir, then create it (and its parents)."""
    path = check_out_dir(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ScenarioError(f"cannot create {path}: {error.strerror or error}", option) from None
    return path


def _check_parent(path: Path, option: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ScenarioError(f"{parent} is a file, so {path} cannot be created", option)
            if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
                raise ScenarioError(f"{parent} is not writable", option)
            return


def write_text_atomic(path: str | os.PathLike, text: str, option: str = "--out") -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    path = check_out_file(path, option)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_text(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def check_replaceable(path: Path, option: str = "--out") -> None:
    """An existing result directory may be replaced only if it holds generated files: a typo
    like ``--out .`` or ``--out ~`` must never swap a home directory away."""
    check_out_dir(path, option)
    if not path.is_dir():
        return
    for entry in path.iterdir():
        generated = (entry.is_dir() and entry.name in GENERATED_DIRS) or (
            entry.is_file() and entry.name.endswith(GENERATED_SUFFIXES))
        if not generated:
            raise ScenarioError(
                f"{path} holds {entry.name!r}, which moesim did not write; results replace the "
                "whole directory, so give a new or empty directory (or move it away)", option)


@contextmanager
def result_dir(path: str | os.PathLike, option: str = "--out") -> Iterator[Path]:
    """Yield an empty temporary directory; on success it becomes `path` in one step."""
    path = Path(path)
    check_replaceable(path, option)
    parent = path.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ScenarioError(f"cannot create {parent}: {error.strerror or error}", option) from None
    _remove_stale(parent, path.name)
    temp = parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        yield temp
        _swap_into_place(temp, path.absolute())
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # the new files (on error) or the old ones


def _swap_into_place(temp: Path, final: Path) -> None:
    """Make `temp` be `final`; afterwards `temp` holds the old contents (or nothing)."""
    if not final.exists():
        os.rename(temp, final)
        return
    if _exchange(temp, final):
        return
    aside = final.with_name(f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(final, aside)
    os.rename(temp, final)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _remove_stale(parent: Path, name: str) -> None:
    """Temporaries of `name` from processes that no longer run (a run killed mid-write)."""
    for prefix in (f".{name}.tmp-", f".{name}.old-"):
        for entry in parent.glob(f"{prefix}*"):
            pid_text = entry.name[len(prefix):].split("-", 1)[0]
            if pid_text.isdigit() and not _alive(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def count(text: str) -> int:
    """argparse type for counts: ``4096``, ``1e9`` or ``1_000``, as a whole number >= 0."""
    import argparse

    cleaned = str(text).strip().replace("_", "")
    try:
        value = int(cleaned)
    except ValueError:
        try:
            number = float(cleaned)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not number.is_integer():
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        value = int(number)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value
