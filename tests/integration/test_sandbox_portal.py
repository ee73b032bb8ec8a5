"""The sandbox's customer portal and charge receipts, as Stripe has them for API 2026-10-28.endive,
driven in-process by the real SDK (sandbox.inprocess; no socket, no Redis, no Firestore).

`POST /v1/billing_portal/sessions` answers a `billing_portal.session` for an existing customer
(default configuration, or the one named), refuses what Stripe refuses (a missing or unknown
customer or configuration, a return_url that is not a URL) and what the sandbox does not do
(flow_data, on_behalf_of, customer_account, after_expiration), replays an idempotent request,
and emits `billing_portal.session.created`. Its hosted page cancels the customer's own
subscription at the period's end (`customer.subscription.updated` with `cancel_at_period_end`
and `cancellation_details.reason=cancellation_requested`, through the usual event delivery),
renews it, never touches another customer's, and expires after an hour. A charge that succeeded
carries a `receipt_url` whose page shows the amount and, after a refund, what was refunded; a
declined charge has none.
"""
from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from sandbox import inprocess
from sandbox.billing_portal import SESSION_SECONDS

AUTH = {"Authorization": f"Bearer {inprocess.TEST_KEY}", "Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def _clean():
    """Overrides the integration conftest's autouse cleaner: no Redis or Firestore here."""
    yield


@pytest.fixture
def sdk():
    return inprocess.client()


@pytest.fixture
def tc(sdk):
    return sdk.http.test_client


def subscribed(sdk, email="a@example.com", user="u1"):
    cus = sdk.v1.customers.create({"email": email, "payment_method": "pm_card_visa",
                                   "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    product = sdk.v1.products.create({"name": "Monthly"})
    price = sdk.v1.prices.create({"product": product.id, "unit_amount": 2499, "currency": "usd",
                                  "recurring": {"interval": "month"}})
    sub = sdk.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}],
                                       "metadata": {"userId": user, "planId": "monthly"}})
    assert sub.status == "active"
    return cus, sub


def portal(sdk, customer: str, **params) -> dict:
    return sdk.v1.billing_portal.sessions.create({"customer": customer, **params}).to_dict()


def path_of(url: str) -> str:
    assert url.startswith(inprocess.BASE), url
    return url[len(inprocess.BASE):]


def events(tc, kind: str) -> list[dict]:
    """The events of this type, oldest first, as the API shows them (GET /v1/events)."""
    listed = tc.get(f"/v1/events?{urlencode({'type': kind, 'limit': 100})}", headers=AUTH).get_json()
    return list(reversed(listed["data"]))


def create(tc, params: dict, headers: dict | None = None):
    return tc.post("/v1/billing_portal/sessions", data=urlencode(params), headers={**AUTH, **(headers or {})})


# -- the session ---------------------------------------------------------------------------------
def test_a_session_for_a_customer_with_the_default_configuration(sdk, tc):
    cus, _ = subscribed(sdk)
    session = portal(sdk, cus.id, return_url="https://tokenbank.test/buy-tokens", expand=["configuration"])
    assert session["object"] == "billing_portal.session" and re.fullmatch(r"bps_\w{24}", session["id"])
    assert (session["customer"], session["return_url"], session["livemode"], session["flow"]) == (
        cus.id, "https://tokenbank.test/buy-tokens", False, None)
    assert re.fullmatch(rf"{re.escape(inprocess.BASE)}/p/session/test_[\w-]+", session["url"])
    conf = session["configuration"]
    assert conf["object"] == "billing_portal.configuration" and conf["is_default"] is True
    assert conf["features"]["subscription_cancel"] == {"cancellation_reason": {"enabled": False, "options": []},
                                                       "enabled": True, "mode": "at_period_end",
                                                       "proration_behavior": "none"}
    again = portal(sdk, cus.id)  # the same default configuration; a new link each time
    assert again["configuration"] == conf["id"] and again["url"] != session["url"] and again["return_url"] is None
    created = events(tc, "billing_portal.session.created")
    assert [e["data"]["object"]["id"] for e in created] == [session["id"], again["id"]]
    assert all("_secret" not in e["data"]["object"] for e in created)


@pytest.mark.parametrize("params,status,message,code,param", [
    ({}, 400, "Missing required param: customer.", "parameter_missing", "customer"),
    ({"customer": "cus_nobody"}, 400, "No such customer: 'cus_nobody'", "resource_missing", "customer"),
    ({"customer": "{c}", "configuration": "bpc_nope"}, 400, "No such configuration: 'bpc_nope'", "resource_missing",
     "configuration"),
    ({"customer": "{c}", "return_url": "not a url"}, 400, "Not a valid URL", "url_invalid", "return_url"),
    ({"customer": "{c}", "return_url": "javascript:alert(1)"}, 400, "Not a valid URL", "url_invalid", "return_url"),
    ({"customer": "{c}", "flow_data[type]": "subscription_cancel"}, 400,
     "The sandbox does not support portal deep links (flow_data).", None, "flow_data"),
    ({"customer": "{c}", "on_behalf_of": "acct_1"}, 400, "The sandbox does not support Connect.", None, "on_behalf_of"),
    ({"customer_account": "acct_1"}, 400, "The sandbox does not support Accounts v2 customers.", None,
     "customer_account"),
    ({"customer": "{c}", "locale[0]": "en"}, 400, None, None, "locale"),
])
def test_what_stripe_or_the_sandbox_refuses(sdk, tc, params, status, message, code, param):
    cus, _ = subscribed(sdk)
    sent = {k: (v.format(c=cus.id) if isinstance(v, str) else v) for k, v in params.items()}
    resp = tc.post("/v1/billing_portal/sessions", data=urlencode(sent, doseq=True), headers=AUTH)
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["type"] == "invalid_request_error" and error.get("param") == param, error
    if message:
        assert error["message"] == message and error.get("code") == code, error
    assert events(tc, "billing_portal.session.created") == []


def test_an_idempotent_create_is_replayed(sdk, tc):
    cus, _ = subscribed(sdk)
    first = create(tc, {"customer": cus.id}, {"Idempotency-Key": "k1"})
    second = create(tc, {"customer": cus.id}, {"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 200 and second.headers["Idempotent-Replayed"] == "true"
    assert first.get_json() == second.get_json()
    assert create(tc, {"customer": cus.id, "locale": "fr"}, {"Idempotency-Key": "k1"}).status_code == 400
    assert len(events(tc, "billing_portal.session.created")) == 1


# -- the hosted page ---------------------------------------------------------------------------------
def test_cancel_at_period_end_then_renew_through_the_page(sdk, tc):
    cus, sub = subscribed(sdk)
    home = path_of(portal(sdk, cus.id, return_url="https://tokenbank.test/buy-tokens")["url"])
    page = tc.get(home).get_data(as_text=True)
    assert f'id="status-{sub.id}" data-status="active"' in page and "Renews on" in page
    assert 'id="return-link" href="https://tokenbank.test/buy-tokens"' in page
    assert f'id="cancel-{sub.id}"' in page and "24.99 USD per month" in page
    confirm = tc.get(f"{home}/subscriptions/{sub.id}/cancel").get_data(as_text=True)
    assert 'id="confirm-cancel-button"' in confirm and "still available until the end of your" in confirm
    assert events(tc, "customer.subscription.updated") == []  # asking is not cancelling

    done = tc.post(f"{home}/subscriptions/{sub.id}/cancel")
    assert done.status_code == 303 and done.headers["Location"] == home
    after = sdk.v1.subscriptions.retrieve(sub.id)
    period_end = after["items"]["data"][0]["current_period_end"]
    assert (after.status, after.cancel_at_period_end, after.cancel_at) == ("active", True, period_end)
    assert after.cancellation_details.reason == "cancellation_requested"
    (updated,) = events(tc, "customer.subscription.updated")
    snapshot = updated["data"]["object"]
    assert snapshot["cancel_at_period_end"] is True and snapshot["metadata"] == {"userId": "u1", "planId": "monthly"}
    assert updated["data"]["previous_attributes"]["cancel_at_period_end"] is False
    page = tc.get(home).get_data(as_text=True)
    assert f'data-status="canceling"' in page and "Cancels on" in page and f'id="renew-{sub.id}"' in page

    assert tc.post(f"{home}/subscriptions/{sub.id}/renew").status_code == 303
    renewed = sdk.v1.subscriptions.retrieve(sub.id)
    assert renewed.cancel_at_period_end is False and renewed.cancellation_details.reason is None
    assert [e["data"]["object"]["cancel_at_period_end"] for e in events(tc, "customer.subscription.updated")] == [
        True, False]


def test_the_page_never_touches_another_customers_subscription(sdk, tc):
    cus, _ = subscribed(sdk)
    _other, theirs = subscribed(sdk, "b@example.com", "u2")
    home = path_of(portal(sdk, cus.id)["url"])
    assert theirs.id not in tc.get(home).get_data(as_text=True)
    assert tc.get(f"{home}/subscriptions/{theirs.id}/cancel").status_code == 404
    assert tc.post(f"{home}/subscriptions/{theirs.id}/cancel").status_code == 404
    assert sdk.v1.subscriptions.retrieve(theirs.id).cancel_at_period_end is False
    assert events(tc, "customer.subscription.updated") == []


def test_an_unknown_link_is_404_and_an_old_one_410(sdk, tc):
    cus, sub = subscribed(sdk)
    home = path_of(portal(sdk, cus.id, return_url="https://tokenbank.test/")["url"])
    assert tc.get("/p/session/test_nope").status_code == 404
    tc.post("/_sandbox/clock", json={"advance_seconds": SESSION_SECONDS + 1})
    expired = tc.get(home)
    assert expired.status_code == 410 and 'href="https://tokenbank.test/"' in expired.get_data(as_text=True)
    assert tc.post(f"{home}/subscriptions/{sub.id}/cancel").status_code == 410
    assert sdk.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False


def test_a_canceled_subscription_is_not_offered(sdk, tc):
    cus, sub = subscribed(sdk)
    sdk.v1.subscriptions.cancel(sub.id)
    page = tc.get(path_of(portal(sdk, cus.id)["url"])).get_data(as_text=True)
    assert 'id="no-subscriptions"' in page and f'id="cancel-{sub.id}"' not in page


# -- receipts ----------------------------------------------------------------------------------------
def test_a_paid_charge_has_a_receipt_that_follows_its_refunds(sdk, tc):
    pi = sdk.v1.payment_intents.create({"amount": 499, "currency": "usd", "payment_method": "pm_card_visa",
                                        "confirm": True, "description": "Starter: 50 tokens",
                                        "allowed_payment_method_types": ["card"]})
    charge = sdk.v1.charges.retrieve(pi.latest_charge)
    assert re.fullmatch(rf"{re.escape(inprocess.BASE)}/receipts/payment/[\w-]+", charge.receipt_url)
    expanded = sdk.v1.payment_intents.retrieve(pi.id, {"expand": ["latest_charge"]})
    assert expanded.latest_charge.receipt_url == charge.receipt_url
    page = tc.get(path_of(charge.receipt_url))
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="receipt-amount" data-amount="499">4.99 USD<' in text
    assert "Visa •••• 4242" in text and "Starter: 50 tokens" in text and "receipt-refunded" not in text
    sdk.v1.refunds.create({"payment_intent": pi.id, "amount": 199})
    assert 'id="receipt-refunded">1.99 USD<' in tc.get(path_of(charge.receipt_url)).get_data(as_text=True)
    assert tc.get("/receipts/payment/nope").status_code == 404


def test_a_declined_charge_has_no_receipt(sdk):
    import stripe

    with pytest.raises(stripe.CardError) as declined:
        sdk.v1.payment_intents.create({"amount": 499, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
                                       "confirm": True, "allowed_payment_method_types": ["card"]})
    charge = sdk.v1.charges.retrieve(declined.value.error.charge)
    assert charge.status == "failed" and charge.receipt_url is None


def test_an_invoice_charge_has_an_invoice_receipt(sdk, tc):
    cus, sub = subscribed(sdk)
    invoice = sdk.v1.invoices.retrieve(sub.latest_invoice, {"expand": ["payments"]})
    pi = invoice.payments.data[0].payment.payment_intent
    charge = sdk.v1.charges.retrieve(sdk.v1.payment_intents.retrieve(pi).latest_charge)
    text = tc.get(path_of(charge.receipt_url)).get_data(as_text=True)
    assert "Invoice receipt" in text and f'id="receipt-invoice">{invoice.number}<' in text
