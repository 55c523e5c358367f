"""Errors of `simulator` and the set of exception types the CLI reports as bad input."""

from predictors.errors import PredictorError
from simulator.safeio.errors import InputError
from topologies.errors import TopologyError
from workloads.errors import WorkloadError


class ScenarioError(ValueError):
    """A scenario, sweep, calibration table or CLI argument is invalid.

    `field` is the YAML path (``workload.batch``) or option name (``--set``).
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


# Exceptions that mean "the user gave bad input": the CLI prints them as one line, exit 2.
USER_ERRORS = (ScenarioError, TopologyError, WorkloadError, PredictorError, InputError)
