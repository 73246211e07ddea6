"""Domain errors, free of any framework; the API maps them to HTTP status codes."""

from __future__ import annotations


class RestoreError(Exception):
    """Base of every error the service reports to its clients."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(RestoreError):
    """The slide, job, model or file does not exist."""

    code = "not_found"


class Gone(NotFound):
    """The file existed but was deleted (a job's output, on request or by retention)."""

    code = "gone"


class InvalidInput(RestoreError):
    """The request or the uploaded file is malformed."""

    code = "invalid_input"


class UnsupportedFormat(RestoreError):
    """No reader opens this file."""

    code = "unsupported_format"


class TooLarge(RestoreError):
    """The upload, slide or requested image exceeds a configured limit."""

    code = "too_large"


class Conflict(RestoreError):
    """The request does not fit the current state (e.g. output of an unfinished job)."""

    code = "conflict"


class ModelUnavailable(RestoreError):
    """The model is not installed or its file does not match its manifest."""

    code = "model_unavailable"


class GaveUp(RestoreError):
    """A task kept stopping its worker (a crash, or memory) on the same piece of a job."""

    code = "gave_up"


class Unauthenticated(RestoreError):
    """No credential, or one that is unknown, expired or revoked."""

    code = "unauthenticated"


class Forbidden(RestoreError):
    """The credential is valid but lacks the scope the request needs."""

    code = "forbidden"


class RateLimited(RestoreError):
    """The caller sent more requests than its rate allows; retry after ``retry_after_s``."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
