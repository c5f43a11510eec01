"""One root for every error a service raises; blueprints turn them into flash messages or HTTP answers."""


class RapportError(Exception):
    """Base of all service errors; str() is a message fit to show a marketer."""


class NotFound(RapportError):
    """The thing asked for does not exist (or is not yours to see)."""


class ValidationError(RapportError):
    """Input was rejected; field names the offending field when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidState(RapportError):
    """The action does not fit the object's current status (e.g. sending a finished campaign)."""
