"""The one error type of `safeio`: an input file (or value) that moesim refuses to read."""


class InputError(ValueError):
    """A file or value that is unreadable, too large, ambiguous or not what was expected.

    `field` is the file (``scenario.yaml``) or the option (``--set``) it concerns, so the CLI
    prints one line naming it; the CLI treats this like every other bad-input error (exit 2).
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.message, self.field = message, field


def reraise_as(error: type[Exception] | None, exc: InputError):
    """`exc` as the caller's own error type (TopologyError, ScenarioError, ...), same message."""
    if error is None or isinstance(exc, error):
        return exc
    return error(exc.message, exc.field)


def raising(function):
    """Give `function` an ``error=`` keyword: the ValueError subclass its InputErrors become.

    Each package keeps its own error type (DESIGN.md section 2) while sharing the readers.
    """
    import functools

    @functools.wraps(function)
    def wrapper(*args, error: type[Exception] | None = None, **kwargs):
        try:
            return function(*args, **kwargs)
        except InputError as exc:
            raise reraise_as(error, exc) from None

    return wrapper
