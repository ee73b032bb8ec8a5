import pytest

from core.catalog import load_catalog
from core.checkout import CheckoutSession, validate_paid_session
from core.errors import PurchaseRejected
from tests.unit.fakes import checkout_session

CATALOG = load_catalog()


def validate(**overrides):
    return validate_paid_session(CheckoutSession.from_stripe(checkout_session(**overrides)), CATALOG)


def rejection(**overrides) -> str:
    with pytest.raises(PurchaseRejected) as rejected:
        validate(**overrides)
    return rejected.value.reason


def test_valid_paid_session_becomes_a_purchase_priced_by_the_catalog():
    purchase = validate(user_id="user_7", package="pro", session_id="cs_ok", payment_intent="pi_1")
    assert (purchase.session_id, purchase.user_id, purchase.package.id) == ("cs_ok", "user_7", "pro")
    assert (purchase.package.tokens, purchase.amount_paid, purchase.currency) == (500, 2999, "usd")
    assert purchase.payment_intent == "pi_1"


def test_upper_case_currency_is_accepted():
    assert validate(currency="USD").currency == "usd"


def test_metadata_user_id_is_used_when_client_reference_id_is_absent():
    assert validate(user_id="user_9", client_reference_id=None).user_id == "user_9"


def test_expanded_payment_intent_object_gives_its_id():
    assert validate(payment_intent={"id": "pi_expanded", "object": "payment_intent"}).payment_intent == "pi_expanded"


@pytest.mark.parametrize("session_id", ["", "cs/1", "..", "__cs__", "c" * 129, None, 42])
def test_invalid_session_id(session_id):
    assert rejection(id=session_id) == "invalid_session_id"


@pytest.mark.parametrize("mode", ["subscription", "setup", None])
def test_wrong_mode(mode):
    assert rejection(mode=mode) == "wrong_mode"


@pytest.mark.parametrize("payment_status", ["unpaid", "no_payment_required", None, "PAID"])
def test_not_paid(payment_status):
    assert rejection(payment_status=payment_status) == "not_paid"


def test_user_mismatch_between_client_reference_and_metadata():
    assert rejection(client_reference_id="user_a", metadata={"userId": "user_b", "packageId": "starter",
                                                             "tokens": "50"}) == "user_mismatch"


@pytest.mark.parametrize("ref", [None, ""])
@pytest.mark.parametrize("meta", [None, ""])
def test_missing_user(ref, meta):
    metadata = {"packageId": "starter", "tokens": "50"}
    if meta is not None:
        metadata["userId"] = meta
    assert rejection(client_reference_id=ref, metadata=metadata) == "missing_user"


@pytest.mark.parametrize("user_id", ["/", "a/b", "..", ".", "__user__", "u" * 129, " user", 42, ["user_1"]])
def test_invalid_user(user_id):
    assert rejection(client_reference_id=user_id, metadata={"packageId": "starter", "tokens": "50"}) == "invalid_user"


def test_invalid_user_in_metadata_only():
    assert rejection(client_reference_id=None, metadata={"userId": "../x", "packageId": "starter",
                                                         "tokens": "50"}) == "invalid_user"


@pytest.mark.parametrize("package_id", ["gold", None, 1, "STARTER"])
def test_unknown_package(package_id):
    assert rejection(metadata={"userId": "user_1", "packageId": package_id, "tokens": "50"}) == "unknown_package"


@pytest.mark.parametrize("tokens", [50, "500", "50.0", None, " 50"])
def test_tokens_mismatch(tokens):
    assert rejection(metadata={"userId": "user_1", "packageId": "starter", "tokens": tokens}) == "tokens_mismatch"


@pytest.mark.parametrize("amount", [498, 500, 0, None, True, 499.0, "499"])
def test_amount_mismatch(amount):
    assert rejection(amount_total=amount) == "amount_mismatch"


@pytest.mark.parametrize("currency", ["eur", None, 840, ""])
def test_currency_mismatch(currency):
    assert rejection(currency=currency) == "currency_mismatch"


def test_price_of_one_package_cannot_buy_another():
    assert rejection(package="premium", amount_total=499) == "amount_mismatch"
