"""The one error type of `workloads`: bad user input, with the field it concerns."""


class WorkloadError(ValueError):
    """A model, trace or workload setting the user wrote is invalid.

    `field` is the YAML path of the offending value (``topology.links[3].bandwidth_GBps``)
    so the CLI can print one line naming file, field and what is allowed.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
