"""The one way moesim writes an output file: whole, or not at all.

Every file goes through a temporary file in the same folder and `os.replace`, so a reader (a
resumed sweep, `moesim plot`, a notebook) never sees half a result. CSV text is built by one
function so every table has the same dialect.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def write_atomic(path: Path | str, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees a half-written result."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def csv_text(rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str],
             lineterminator: str = "\n") -> str:
    """CSV with a header of `columns`; rows are mappings (by column) or sequences (in order)."""
    buffer = io.StringIO()
    rows = list(rows)
    if rows and not isinstance(rows[0], Mapping):
        writer = csv.writer(buffer, lineterminator=lineterminator)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator=lineterminator)
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path | str, rows: Iterable[Mapping[str, Any] | Sequence[Any]],
              columns: Sequence[str] | None = None, lineterminator: str = "\n") -> None:
    """A CSV file written atomically; `columns` default to the first row's keys."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0]) if rows else []
    write_atomic(path, csv_text(rows, columns, lineterminator))


def write_json(path: Path | str, data: Any, indent: int | None = 2) -> None:
    """JSON written atomically, with a final newline when indented (summary.json's layout)."""
    write_atomic(path, json.dumps(data, indent=indent) + ("\n" if indent is not None else ""))
