"""Trace files on disk: compressed .npz with a JSON `meta` array, written atomically."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np


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
