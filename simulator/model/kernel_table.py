"""Measured kernel times that replace the roofline for the shapes they list.

A CSV with one measured kernel per line (``#`` lines and blank lines are skipped):

    gpu,op,m,n,k,time_us,source
    a100-sxm4-80gb,gemm,128,14336,4096,75.0,my cuBLAS run 2024-05-01
    a100-sxm4-80gb,expert_ffn,64,14336,4096,230.0,vLLM fused_moe benchmark

``op`` is ``gemm`` (C[m, n] = A[m, k] B[k, n]) or ``expert_ffn`` (one expert's whole FFN on
``m`` tokens, ``n`` = intermediate size, ``k`` = hidden). An optional ``dtype_bytes`` column
(default 2) gives the element size. Rows with the same gpu, op, n, k and dtype_bytes form one
curve over ``m``: a lookup at a listed ``m`` returns that time exactly, one between two listed
``m`` interpolates linearly in ``m`` (exact for the affine time of a compute-bound kernel, and
for a flat memory-bound stretch); outside the listed range, or for an unlisted shape, the
lookup returns None and the caller falls back to the roofline.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from simulator.safeio import read_text
from simulator.errors import ScenarioError
from topologies.devices import gpu_catalogue

REQUIRED_COLUMNS = ("gpu", "op", "m", "n", "k", "time_us", "source")
OPTIONAL_COLUMNS = ("dtype_bytes",)
OPS = ("gemm", "expert_ffn")
DTYPE_BYTES = (1, 2, 4)


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured kernel: `time_s` for `op` of shape (m, n, k) on `gpu`."""

    gpu: str
    op: str
    m: int
    n: int
    k: int
    time_s: float
    source: str = ""
    dtype_bytes: int = 2
    line: int = 0  # line in the CSV it came from (0: built in code)


class CalibrationTable:
    """Measured times grouped into curves over m, one per (gpu, op, n, k, dtype_bytes)."""

    def __init__(self, points: Iterable[CalibrationPoint], path: str = "<calibration>"):
        self.path = str(path)
        self.points = tuple(points)
        curves: dict[tuple, dict[int, CalibrationPoint]] = {}
        for point in self.points:
            curve = curves.setdefault(_key(point.gpu, point.op, point.n, point.k, point.dtype_bytes), {})
            if point.m in curve:
                first = curve[point.m]
                raise ScenarioError(
                    f"duplicate of line {first.line}: same gpu, op, m, n, k and dtype_bytes",
                    f"{self.path}:{point.line}")
            curve[point.m] = point
        self._curves = {
            key: (tuple(sorted(curve)), tuple(curve[m].time_s for m in sorted(curve)))
            for key, curve in curves.items()
        }

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return f"CalibrationTable({self.path!r}, {len(self)} points, {len(self._curves)} shapes)"

    @property
    def gpus(self) -> frozenset[str]:
        return frozenset(point.gpu for point in self.points)

    def lookup_s(self, gpu: str, op: str, m: float, n: float, k: float,
                 dtype_bytes: int = 2) -> float | None:
        """Measured (or interpolated) seconds, or None when the table does not cover this shape."""
        curve = self._curves.get(_key(gpu, op, n, k, dtype_bytes))
        if curve is None:
            return None
        ms, times = curve
        if m < ms[0] or m > ms[-1]:
            return None
        i = bisect.bisect_left(ms, m)
        if ms[i] == m:
            return times[i]
        m0, m1, t0, t1 = ms[i - 1], ms[i], times[i - 1], times[i]
        return t0 + (t1 - t0) * (m - m0) / (m1 - m0)

    @classmethod
    def from_csv(cls, path: str | Path) -> CalibrationTable:
        """Read a calibration CSV; bad content raises ScenarioError naming file, line and column."""
        path = Path(path)
        text = read_text(path, error=ScenarioError)  # regular UTF-8 file within the size limit (safeio)
        lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise ScenarioError(f"empty: needs a header line with columns {', '.join(REQUIRED_COLUMNS)}",
                                str(path))
        header_line, header_text = lines[0]
        header = [name.strip() for name in next(csv.reader([header_text]))]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ScenarioError(f"column {repeated[0]!r} appears twice; give each column once",
                                f"{path}:{header_line}")
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise ScenarioError(
                f"missing column {', '.join(repr(name) for name in missing)}; required: "
                f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})",
                f"{path}:{header_line}")
        points = []
        for number, line in lines[1:]:
            values = [value.strip() for value in next(csv.reader([line]))]
            if len(values) != len(header):
                raise ScenarioError(f"has {len(values)} values, the header has {len(header)} columns",
                                    f"{path}:{number}")
            points.append(_parse_row(dict(zip(header, values)), f"{path}:{number}", number))
        return cls(points, str(path))


def _key(gpu: str, op: str, n: float, k: float, dtype_bytes: int) -> tuple:
    # n and k are integers in the table; a float n that is not integral never matches
    return (gpu, op, float(n), float(k), int(dtype_bytes))


def _parse_row(row: dict[str, str], where: str, line: int) -> CalibrationPoint:
    def fail(column: str, message: str) -> None:
        raise ScenarioError(message, f"{where}: column {column!r}")

    gpu = row["gpu"]
    known = gpu_catalogue()
    if gpu not in known:
        fail("gpu", f"unknown GPU {gpu!r}; known: {', '.join(sorted(known))}")
    op = row["op"]
    if op not in OPS:
        fail("op", f"must be one of {', '.join(OPS)}, got {op!r}")
    shape = {}
    for column in ("m", "n", "k"):
        text = row[column]
        try:
            value = int(text)
        except ValueError:
            fail(column, f"must be an integer >= 1, got {text!r}")
        if value < 1:
            fail(column, f"must be an integer >= 1, got {value}")
        shape[column] = value
    text = row["time_us"]
    try:
        time_us = float(text)
    except ValueError:
        fail("time_us", f"must be a number > 0 (microseconds), got {text!r}")
    if not math.isfinite(time_us) or time_us <= 0:
        fail("time_us", f"must be a number > 0 (microseconds), got {text}")
    dtype_bytes = 2
    if row.get("dtype_bytes"):
        text = row["dtype_bytes"]
        if text not in {str(b) for b in DTYPE_BYTES}:
            fail("dtype_bytes", f"must be one of {', '.join(map(str, DTYPE_BYTES))}, got {text!r}")
        dtype_bytes = int(text)
    return CalibrationPoint(gpu, op, shape["m"], shape["n"], shape["k"], time_us / 1e6,
                            row["source"], dtype_bytes, line)
