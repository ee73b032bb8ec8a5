"""Which failures are worth retrying: the backing services being busy or down."""
from __future__ import annotations

from google.api_core import exceptions as gexc
import stripe
from redis import exceptions as rexc

from core.errors import TransientError

_TRANSIENT = (
    TransientError,
    gexc.ServiceUnavailable, gexc.Aborted, gexc.DeadlineExceeded, gexc.InternalServerError,
    gexc.ResourceExhausted, gexc.RetryError, gexc.Unknown,
    rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, rexc.TryAgainError,
    ConnectionError, TimeoutError,
    stripe.APIConnectionError, stripe.RateLimitError,
)


def transient_cause(exc: BaseException) -> BaseException | None:
    """The transient failure in ``exc``'s chain (itself, its cause or its context), if any.

    The Firestore client raises a ValueError from its rollback when the transaction's
    begin call itself failed; the real cause (e.g. ServiceUnavailable) is in the chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    return transient_cause(exc) is not None


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500:
        return True
    # A soft time limit (a hung call) is raised by the task runner; it is named, not imported,
    # because core does not depend on Celery.
    return type(exc).__name__ == "SoftTimeLimitExceeded"
