"""Safe readers for every file a user hands moesim: one job, below every other package.

`topologies`, `workloads`, `predictors` and `simulator` all read user files (scenarios, topologies,
calibrations, sweeps, traces, logs, result directories). They share these readers so that a
hostile or mistaken input -- a FIFO, /dev/zero, a 3 GB log, Latin-1 text, a YAML alias bomb,
duplicate keys, `010` read as octal, JSON nested 10^5 deep -- is refused with one `InputError`
naming the file, instead of a hang, a memory blow-up, a traceback or a silent surprise.
This package imports nothing of moesim, so any layer may use it.
"""

from simulator.safeio.budget import check_bytes, memory_limit_bytes
from simulator.safeio.errors import InputError
from simulator.safeio.files import check_regular_file, read_bytes, read_text
from simulator.safeio.json_io import loads_json, read_json
from simulator.safeio.yaml_io import loads_yaml, read_yaml

__all__ = [
    "InputError", "check_bytes", "memory_limit_bytes", "check_regular_file", "read_bytes",
    "read_text", "loads_json", "read_json", "loads_yaml", "read_yaml",
]
