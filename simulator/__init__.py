"""moesim simulator: scenario, engine, network, collectives, compute, MoE pipeline, CLI.

The Python API (docs/api.md) is `simulator.run`, `simulator.sweep` and `simulator.gps`, loaded on
first use so that ``import simulator`` stays light (no scipy, matplotlib or torch).
"""

_API = ("run", "sweep", "gps", "load", "Result", "GPSResult", "table")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from simulator import api

        return getattr(api, name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
