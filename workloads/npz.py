"""Trace files on disk: compressed .npz with a JSON `meta` array, written atomically and read
only after every member's header has been checked (no pickles, no allocation beyond the limit)."""

from __future__ import annotations

import json
import os
import uuid
import zipfile
import zlib
from pathlib import Path

import numpy as np

from simulator.safeio import InputError, check_bytes, check_regular_file, loads_json
from workloads.errors import WorkloadError


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write `arrays` plus `meta` (as one JSON string, minus any `path` key) to `path`.

    A temporary file in the same folder is renamed over the target, so a reader never sees a
    half-written trace; "x" mode never clobbers another writer's temporary file.
    """
    path = Path(path)
    payload = dict(arrays)
    payload["meta"] = np.array([json.dumps({k: v for k, v in meta.items() if k != "path"},
                                           sort_keys=True)])
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb") as out:
            np.savez_compressed(out, **payload)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def load_npz(path: str | os.PathLike, what: str = ".npz trace",
             field: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read every array of an .npz after checking each member's header, and its JSON `meta`.

    Before anything is allocated: the path is a regular file; every member is a ``.npy`` array
    (not a pickle, not an object array); the sizes its header declares fit both the member's
    stored size and the memory limit (`safeio.check_bytes`), so an archive whose header claims
    3 PiB fails in a millisecond. Returns (arrays, including the raw ``meta``; the parsed meta dict).
    """
    path = check_regular_file(path, field, error=WorkloadError)
    if not zipfile.is_zipfile(path):
        raise WorkloadError(f"{path}: not a {what} (not a zip archive)", field)
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(_member_bytes(archive, info, path, field) for info in archive.infolist())
        check_bytes(declared, f"{path}: reading its arrays", field, error=WorkloadError)
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise WorkloadError(f"{path}: not a {what} ({error})", field) from None
    except ValueError as error:
        if isinstance(error, WorkloadError):
            raise
        raise WorkloadError(f"{path}: unreadable array ({error})", field) from None
    meta: dict = {}
    if "meta" in arrays:
        raw = arrays["meta"]
        if raw.size and raw.dtype.kind not in "US":
            raise WorkloadError(f"{path}[meta]: must be a JSON string, got {raw.dtype}", field)
        try:
            meta = loads_json(str(raw.reshape(-1)[0]), f"{path}[meta]") if raw.size else {}
        except InputError as error:
            raise WorkloadError(f"{path}[meta]: not a JSON string ({error.message})", field) from None
        if not isinstance(meta, dict):
            raise WorkloadError(f"{path}[meta]: must be a JSON object", field)
    return arrays, meta


def _member_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path,
                  field: str | None) -> int:
    """Bytes the member's .npy header declares, after checking it is a plain numeric array."""
    where = f"{path}[{info.filename.removesuffix('.npy')}]"
    if not info.filename.endswith(".npy"):
        raise WorkloadError(f"{where}: member is not a .npy array", field)
    with archive.open(info) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise WorkloadError(f"{where}: unsupported .npy version {version}", field)
        except (ValueError, SyntaxError, EOFError) as error:
            if isinstance(error, WorkloadError):
                raise
            raise WorkloadError(f"{where}: not a .npy array ({error})", field) from None
        header_bytes = handle.tell()
    if dtype.hasobject:
        raise WorkloadError(f"{where}: holds Python objects ({dtype}); only numeric or string "
                            "arrays are read (no pickles)", field)
    count = 1
    for size in shape:
        count *= int(size)
    data_bytes = count * dtype.itemsize
    if data_bytes + header_bytes > info.file_size:
        raise WorkloadError(f"{where}: header declares {data_bytes:,} bytes ({dtype} {shape}) but "
                            f"the member holds {info.file_size - header_bytes:,}: corrupt or forged",
                            field)
    return data_bytes
