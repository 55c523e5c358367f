"""The one error type of `topologies`: bad user input, with the field it concerns."""


class TopologyError(ValueError):
    """A topology or catalogue entry the user wrote is invalid.

    `field` is the YAML path of the offending value (``topology.links[3].bandwidth_GBps``)
    so the CLI can print one line naming file, field and what is allowed.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
