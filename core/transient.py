"""Which failures are worth retrying: the backing services being busy or down."""
from __future__ import annotations

from google.api_core import exceptions as gexc
from redis import exceptions as rexc

from core.errors import TransientError

_TRANSIENT = (
    TransientError,
    gexc.ServiceUnavailable, gexc.Aborted, gexc.DeadlineExceeded, gexc.InternalServerError,
    gexc.ResourceExhausted, gexc.RetryError, gexc.Unknown,
    rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, rexc.TryAgainError,
    ConnectionError, TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    # firestore.transactional wraps exhausted Aborted retries in ValueError.
    if isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted):
        return True
    # A soft time limit (a hung call) is raised by the task runner; it is named, not imported,
    # because core does not depend on Celery.
    return type(exc).__name__ == "SoftTimeLimitExceeded"
