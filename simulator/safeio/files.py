"""Open user files safely: regular files only, bounded size, UTF-8 text with a clear message.

`Path.read_text()` on a FIFO blocks forever, on /dev/zero fills memory, on a Latin-1 file raises
UnicodeDecodeError: every reader here checks first. The size limit for text inputs is
``MOESIM_MAX_FILE_MB`` (default 256 MB); binary inputs (traces) pass their own limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from simulator.safeio.errors import InputError, raising

FILE_LIMIT_ENV = "MOESIM_MAX_FILE_MB"
DEFAULT_TEXT_LIMIT_MB = 256

_BOMS = (  # longest first: UTF-32 LE starts with UTF-16 LE's BOM
    (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"),
)


def text_limit_bytes() -> int:
    text = os.environ.get(FILE_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_TEXT_LIMIT_MB * 10**6
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"must be a number of MB, got {text!r}", FILE_LIMIT_ENV) from None
    if not 0 < value < float("inf"):
        raise InputError(f"must be a finite number of MB > 0, got {text!r}", FILE_LIMIT_ENV)
    return int(value * 10**6)


@raising
def check_regular_file(path: str | os.PathLike, field: str | None = None,
                       limit_bytes: int | None = None) -> Path:
    """`path` if it is an existing regular file no larger than `limit_bytes`; else InputError.

    A FIFO, a device (/dev/zero), a socket or a directory is refused before it is opened.
    `field` names the option or YAML key the path came from; the message always names the path.
    """
    path = Path(path)
    if str(path) in ("", "None", "."):
        raise InputError("no file given (empty path)", field)

    def fail(message: str):
        return InputError(f"{path}: {message}", field) if field else InputError(message, str(path))

    try:
        info = path.stat()
    except FileNotFoundError:
        raise fail("no such file") from None
    except NotADirectoryError:
        raise fail("no such file (a parent is not a directory)") from None
    except OSError as error:
        raise fail(f"cannot read it ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise fail("is a directory; expected a file")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise fail(f"is {kind}; expected a regular file")
    if limit_bytes is not None and info.st_size > limit_bytes:
        raise fail(f"is {info.st_size / 1e6:,.1f} MB; the limit for this input is "
                   f"{limit_bytes / 1e6:,.1f} MB (set {FILE_LIMIT_ENV} to raise it)")
    return path


@raising
def read_bytes(path: str | os.PathLike, field: str | None = None,
               limit_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most `limit_bytes` (default: the text limit)."""
    limit = text_limit_bytes() if limit_bytes is None else limit_bytes
    path = check_regular_file(path, field, limit)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)  # a file that grew since stat() is still bounded
    except OSError as error:
        raise _located(f"cannot read it ({error.strerror or error})", path, field) from None
    if len(data) > limit:
        raise _located(f"is larger than the {limit / 1e6:,.1f} MB limit for this input "
                       f"(set {FILE_LIMIT_ENV} to raise it)", path, field)
    return data


@raising
def read_text(path: str | os.PathLike, field: str | None = None,
              limit_bytes: int | None = None) -> str:
    """A regular file's text, strictly UTF-8 (a UTF-8 BOM is dropped); else one InputError."""
    data = read_bytes(path, field, limit_bytes)
    try:
        return decode_utf8(data)
    except InputError as error:
        raise _located(error.message, Path(path), field) from None


def _located(message: str, path: Path, field: str | None) -> InputError:
    return InputError(f"{path}: {message}", field) if field else InputError(message, str(path))


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (BOM dropped); UTF-16/32 and other encodings are one clear InputError."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise InputError(f"is {name} text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        byte = data[error.start: error.start + 1].hex()
        raise InputError(f"is not UTF-8 text (byte 0x{byte} on line {line}); "
                         "save it as UTF-8") from None
