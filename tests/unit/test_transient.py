import pytest
from google.api_core import exceptions as gexc
from redis import exceptions as rexc

from core.domain.errors import MalformedEvent, PurchaseRejected
from core.errors import TransientError
from core.transient import is_transient


def value_error_caused_by(cause):
    try:
        raise ValueError("Failed to commit transaction in 5 attempts.") from cause
    except ValueError as exc:
        return exc


class SoftTimeLimitExceeded(Exception):
    """Named like Celery's, which core must not import."""


@pytest.mark.parametrize("exc", [
    gexc.ServiceUnavailable("down"), gexc.Aborted("contention"), gexc.DeadlineExceeded("slow"),
    rexc.ConnectionError("refused"), rexc.TimeoutError("timeout"), TransientError("busy"),
    value_error_caused_by(gexc.Aborted("contention")), SoftTimeLimitExceeded(),
], ids=lambda e: type(e).__name__)
def test_busy_or_unreachable_services_are_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    PurchaseRejected("amount_mismatch"), MalformedEvent("bad"), KeyError("x"), ValueError("plain"),
    value_error_caused_by(KeyError("x")), gexc.InvalidArgument("bad id"), gexc.PermissionDenied("no"),
], ids=lambda e: type(e).__name__)
def test_permanent_errors_are_not_transient(exc):
    assert not is_transient(exc)


def test_stripe_outages_are_transient_and_its_refusals_are_not():
    import stripe

    assert is_transient(stripe.APIConnectionError("down"))
    assert is_transient(stripe.RateLimitError("slow down", http_status=429))
    assert is_transient(stripe.APIError("oops", http_status=503))
    assert not is_transient(stripe.InvalidRequestError("No such checkout.session", "id", http_status=404))
    assert not is_transient(stripe.AuthenticationError("bad key", http_status=401))
