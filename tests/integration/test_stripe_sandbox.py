"""The local Stripe sandbox, driven by the real `stripe` SDK (module style and
StripeClient), plain HTTP for the hosted page, and a receiving HTTP server for
its webhooks. The sandbox runs as a subprocess on a free port.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
import stripe

from tests.sandbox_support import TEST_KEY, WebhookReceiver, running_sandbox

SECRET = "whsec_sandbox_test_secret"


@pytest.fixture(autouse=True)
def _clean():
    """Overrides the integration conftest's autouse cleaner: these tests need neither Redis nor Firestore."""
    yield
SECRET_2 = "whsec_sandbox_rotated_secret"


@pytest.fixture(scope="module")
def receiver():
    rx = WebhookReceiver()
    yield rx
    rx.close()


@pytest.fixture(scope="module")
def sandbox(receiver):
    with running_sandbox(webhook_urls=[receiver.url], secret=f"{SECRET},{SECRET_2}") as sb:
        yield sb


@pytest.fixture
def client(sandbox):
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": sandbox.url})


@pytest.fixture
def module_style(sandbox):
    """Module-style SDK configuration, restored afterwards."""
    saved = (stripe.api_key, stripe.api_base, stripe.enable_telemetry)
    stripe.api_key, stripe.api_base, stripe.enable_telemetry = TEST_KEY, sandbox.url, False
    try:
        yield stripe
    finally:
        stripe.api_key, stripe.api_base, stripe.enable_telemetry = saved


def tokenbank_session_params(user="user_1", package="pack_100", tokens="100", amount=499, **extra):
    """The exact shape tokenbank sends to create a Checkout Session."""
    params = {
        "mode": "payment",
        "line_items": [{
            "price_data": {"currency": "usd", "unit_amount": amount, "product_data": {"name": f"{tokens} tokens"}},
            "quantity": 1,
        }],
        "client_reference_id": user,
        "metadata": {"userId": user, "packageId": package, "tokens": tokens},
        "payment_intent_data": {"metadata": {"userId": user, "packageId": package, "tokens": tokens}},
        "success_url": "https://tokenbank.test/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://tokenbank.test/cancel",
        "expires_at": int(time.time()) + 1800,
    }
    params.update(extra)
    return params


def new_session(client, **kw):
    return client.v1.checkout.sessions.create(params=tokenbank_session_params(**kw))


def pay_by_form(session, card="4242 4242 4242 4242", method="card", email="buyer@example.com"):
    return requests.post(session.url, data={"email": email, "card_number": card, "method": method},
                         allow_redirects=False, timeout=10)


def wait_until(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.05)


def bearer(key=TEST_KEY):
    return {"Authorization": f"Bearer {key}"}


# --- basics ------------------------------------------------------------------------

def test_healthz_and_api_keys(sandbox, module_style):
    r = requests.get(sandbox.url + "/healthz", timeout=5)
    assert (r.status_code, r.text) == (200, "ok")

    r = requests.get(sandbox.url + "/v1/checkout/sessions", timeout=5)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "API key" in r.json()["error"]["message"]

    r = requests.get(sandbox.url + "/v1/checkout/sessions", headers=bearer("sk_live_0123456789abcdef"), timeout=5)
    assert r.status_code == 401
    assert "never accepts live keys" in r.json()["error"]["message"]

    with pytest.raises(stripe.AuthenticationError) as exc:
        stripe.checkout.Session.list(api_key="sk_live_0123456789abcdef")
    assert "never accepts live keys" in str(exc.value)
    with pytest.raises(stripe.AuthenticationError):
        stripe.checkout.Session.list(api_key="sk_test_1")  # too short
    assert requests.get(sandbox.url + "/v1/checkout/sessions", headers=bearer(), timeout=5).status_code == 200


def test_create_and_retrieve_session_module_style(sandbox, module_style):
    params = tokenbank_session_params()
    cs = stripe.checkout.Session.create(**params, idempotency_key="tb-create-1")
    assert cs.object == "checkout.session" and cs.id.startswith("cs_test_") and cs.livemode is False
    assert cs.url == f"{sandbox.url}/pay/{cs.id}"
    assert (cs.status, cs.payment_status, cs.mode) == ("open", "unpaid", "payment")
    assert (cs.amount_total, cs.amount_subtotal, cs.currency) == (499, 499, "usd")
    assert cs.client_reference_id == "user_1"
    assert cs.metadata.to_dict() == {"userId": "user_1", "packageId": "pack_100", "tokens": "100"}
    assert cs.expires_at == params["expires_at"]
    assert cs.success_url == "https://tokenbank.test/success?session_id={CHECKOUT_SESSION_ID}"
    assert cs.payment_intent is None

    got = stripe.checkout.Session.retrieve(cs.id, expand=["line_items"])
    (item,) = got.line_items.data
    assert (item.object, item.quantity, item.amount_total, item.description) == ("item", 1, 499, "100 tokens")
    assert item.price.unit_amount == 499 and item.price.currency == "usd" and item.price.type == "one_time"
    assert got.line_items.url == f"/v1/checkout/sessions/{cs.id}/line_items"
    assert "line_items" not in stripe.checkout.Session.retrieve(cs.id)

    items = stripe.checkout.Session.list_line_items(cs.id)
    assert items.object == "list" and [i.id for i in items.data] == [item.id]


def test_create_session_with_client_and_catalogue_objects(client):
    product = client.v1.products.create(params={"name": "500 tokens"})
    price = client.v1.prices.create(params={"product": product.id, "unit_amount": 1999, "currency": "eur"})
    assert client.v1.prices.retrieve(price.id).product == product.id
    customer = client.v1.customers.create(params={"email": "c@example.com"})
    assert client.v1.customers.retrieve(customer.id).email == "c@example.com"
    cs = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price.id, "quantity": 2}], "customer": customer.id,
        "success_url": "https://tokenbank.test/ok"})
    assert (cs.amount_total, cs.currency, cs.customer) == (3998, "eur", customer.id)
    assert client.v1.checkout.sessions.line_items.list(cs.id).data[0].price.id == price.id
    assert price.id in [p.id for p in client.v1.prices.list(params={"product": product.id}).data]


def test_session_validation_errors(client, sandbox):
    now = int(time.time())
    for bad in (now + 60, now + 25 * 3600):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            new_session(client, expires_at=bad)
        assert exc.value.http_status == 400 and exc.value.param == "expires_at"
        assert "expires_at" in exc.value.user_message

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={**tokenbank_session_params(), "shipping_adress": "x"})
    assert exc.value.code == "parameter_unknown" and exc.value.param == "shipping_adress"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": "price_nope", "quantity": 1}]})
    assert exc.value.code == "resource_missing" and exc.value.param == "line_items[0][price]"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"line_items": tokenbank_session_params()["line_items"]})
    assert exc.value.code == "parameter_missing" and exc.value.param == "mode"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        new_session(client, amount=10)
    assert exc.value.code == "amount_too_small"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.retrieve("cs_test_doesnotexist")
    err = exc.value
    assert (err.http_status, err.code, err.param) == (404, "resource_missing", "id")
    assert err.json_body["error"]["type"] == "invalid_request_error"
    assert "No such checkout.session: 'cs_test_doesnotexist'" in err.user_message

    r = requests.post(sandbox.url + "/v1/nonexistent_things", headers=bearer(), timeout=5)
    assert r.status_code == 404 and "Unrecognized request URL" in r.json()["error"]["message"]


def test_idempotency_replay_and_conflict(sandbox, client):
    body = "mode=payment&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=499" \
           "&line_items[0][price_data][product_data][name]=100+tokens&line_items[0][quantity]=1" \
           "&metadata[userId]=u_idem&expand[]=line_items&payment_method_types[]=card"
    headers = {**bearer(), "Idempotency-Key": "idem-raw-1", "Content-Type": "application/x-www-form-urlencoded"}
    first = requests.post(sandbox.url + "/v1/checkout/sessions", data=body, headers=headers, timeout=5)
    second = requests.post(sandbox.url + "/v1/checkout/sessions", data=body, headers=headers, timeout=5)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content  # byte for byte
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json()["metadata"] == {"userId": "u_idem"}
    assert first.json()["line_items"]["data"][0]["amount_total"] == 499
    assert first.json()["payment_method_types"] == ["card"]

    conflict = requests.post(sandbox.url + "/v1/checkout/sessions", data=body.replace("499", "999"), headers=headers, timeout=5)
    assert conflict.status_code == 400
    assert conflict.json()["error"]["type"] == "idempotency_error"

    # Through the SDK: the same key replays the same session; a different body is an IdempotencyError.
    a = client.v1.checkout.sessions.create(params=tokenbank_session_params(user="u_sdk"), options={"idempotency_key": "idem-sdk"})
    b = client.v1.checkout.sessions.create(params=tokenbank_session_params(user="u_sdk", expires_at=a.expires_at),
                                           options={"idempotency_key": "idem-sdk"})
    assert a.id == b.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(params=tokenbank_session_params(user="someone_else"),
                                           options={"idempotency_key": "idem-sdk"})


def test_list_with_created_filter_and_pagination(client, sandbox):
    time.sleep(1.05)  # a fresh second, so the created filter selects only this test's sessions
    start = int(time.time())
    ids = [new_session(client, user=f"page_{i}").id for i in range(7)]
    page = client.v1.checkout.sessions.list(params={"created": {"gte": start}, "limit": 3})
    assert page.object == "list" and page.url == "/v1/checkout/sessions" and page.has_more is True
    assert [s.id for s in page.data] == ids[::-1][:3]  # newest first

    seen = [s.id for s in page.auto_paging_iter()]
    assert seen == ids[::-1]

    page2 = client.v1.checkout.sessions.list(params={"created": {"gte": start}, "limit": 3, "starting_after": ids[4]})
    assert [s.id for s in page2.data] == [ids[3], ids[2], ids[1]] and page2.has_more is True
    before = client.v1.checkout.sessions.list(params={"created": {"gte": start}, "limit": 2, "ending_before": ids[2]})
    assert [s.id for s in before.data] == [ids[4], ids[3]] and before.has_more is True

    assert all(s.created < start for s in client.v1.checkout.sessions.list(params={"created": {"lt": start}}).data)
    assert all(s.created > start for s in client.v1.checkout.sessions.list(params={"created": {"gt": start}}).data)
    assert all(s.created <= start for s in client.v1.checkout.sessions.list(params={"created": {"lte": start}}).data)

    client.v1.checkout.sessions.expire(ids[0])
    expired = client.v1.checkout.sessions.list(params={"created": {"gte": start}, "status": "expired"}).data
    assert [s.id for s in expired] == [ids[0]]
    open_ = client.v1.checkout.sessions.list(params={"created": {"gte": start}, "status": "open", "limit": 100}).data
    assert set(s.id for s in open_) == set(ids[1:])


def test_expire_session(client, receiver, sandbox):
    cs = new_session(client)
    expired = client.v1.checkout.sessions.expire(cs.id)
    assert expired.status == "expired"
    ev = receiver.wait_for_event("checkout.session.expired", where=lambda e: e["data"]["object"]["id"] == cs.id).event
    assert ev["data"]["object"]["status"] == "expired"
    assert ev["data"]["object"]["metadata"]["userId"] == "user_1"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.expire(cs.id)
    assert exc.value.http_status == 400
    assert requests.get(cs.url, timeout=5).status_code == 410
    r = pay_by_form(cs)
    assert r.status_code == 410 and 'id="error"' in r.text
    assert client.v1.checkout.sessions.retrieve(cs.id).payment_status == "unpaid"


def test_clock_and_background_expirer():
    """Its own sandbox: moving the clock forward would upset the other tests' expires_at."""
    rx = WebhookReceiver()
    try:
        with running_sandbox(webhook_urls=[rx.url], secret=SECRET) as sandbox:
            client = stripe.StripeClient(TEST_KEY, base_addresses={"api": sandbox.url})
            cs = new_session(client)
            status, body = sandbox.control("POST", "/_sandbox/clock", {"advance_seconds": 1799})
            assert status == 200 and cs.id not in body["expired"]
            # One sandbox-second is left: the background expirer (every 0.2 s here) expires it by itself.
            ev = rx.wait_for_event("checkout.session.expired", timeout=5,
                                   where=lambda e: e["data"]["object"]["id"] == cs.id).event
            assert ev["data"]["object"]["status"] == "expired"
            # Advancing past expires_at expires sessions at once.
            now = sandbox.control("GET", "/_sandbox/clock")[1]["now"]
            cs2 = client.v1.checkout.sessions.create(params=tokenbank_session_params(expires_at=now + 3600))
            status, body = sandbox.control("POST", "/_sandbox/clock", {"advance_seconds": 3601})
            assert body["expired"] == [cs2.id]
            assert client.v1.checkout.sessions.retrieve(cs2.id).status == "expired"
            assert sandbox.control("POST", "/_sandbox/clock", {"advance_seconds": -5})[0] == 400
    finally:
        rx.close()


# --- the hosted page -------------------------------------------------------------------

def test_hosted_page_successful_card(client, receiver, sandbox):
    cs = new_session(client, user="u_card", amount=799)
    page = requests.get(cs.url, timeout=5)
    assert page.status_code == 200
    for element in ("email", "card-number", "pay-button", "delayed-button", "cancel-link"):
        assert f'id="{element}"' in page.text
    assert "100 tokens" in page.text and "7.99 USD" in page.text and "4242 4242 4242 4242" in page.text
    assert 'href="https://tokenbank.test/cancel"' in page.text
    css = re.search(r'href="([^"]+\.css)"', page.text).group(1)
    assert requests.get(sandbox.url + css, timeout=5).status_code == 200
    assert "<script" not in page.text and "https://cdn" not in page.text

    r = pay_by_form(cs)
    assert r.status_code == 303
    assert r.headers["Location"] == f"https://tokenbank.test/success?session_id={cs.id}"

    done = client.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["payment_intent"]})
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.customer_details.email == "buyer@example.com"
    pi = done.payment_intent
    assert pi.status == "succeeded" and pi.amount == 799
    assert pi.metadata.to_dict() == {"userId": "u_card", "packageId": "pack_100", "tokens": "100"}
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.status, charge.paid, charge.amount, charge.payment_intent) == ("succeeded", True, 799, pi.id)
    assert charge.metadata.to_dict() == pi.metadata.to_dict()

    completed = receiver.wait_for_event("checkout.session.completed",
                                        where=lambda e: e["data"]["object"]["id"] == cs.id).event
    assert completed["data"]["object"]["payment_status"] == "paid"
    assert completed["data"]["object"]["client_reference_id"] == "u_card"
    receiver.wait_for_event("payment_intent.succeeded", where=lambda e: e["data"]["object"]["id"] == pi.id)
    receiver.wait_for_event("charge.succeeded", where=lambda e: e["data"]["object"]["id"] == charge.id)

    # Paying again never charges twice.
    again = pay_by_form(cs)
    assert again.status_code == 409 and 'id="error"' in again.text
    assert len(client.v1.charges.list(params={"payment_intent": pi.id}).data) == 1


def test_hosted_page_declined_card_then_success(client, sandbox):
    cs = new_session(client)
    r = pay_by_form(cs, card="4000 0000 0000 0002")
    assert r.status_code == 402
    assert re.search(r'id="error"[^>]*>\s*Your card was declined\.', r.text)
    assert client.v1.checkout.sessions.retrieve(cs.id).status == "open"

    r = pay_by_form(cs, card="1234 5678 9012 3456")
    assert r.status_code == 402 and "Your card number is invalid." in r.text

    r = pay_by_form(cs, card="4242424242424242")
    assert r.status_code == 303
    done = client.v1.checkout.sessions.retrieve(cs.id)
    assert done.payment_status == "paid"
    charges = client.v1.charges.list(params={"payment_intent": done.payment_intent}).data
    assert sorted(c.status for c in charges) == ["failed", "succeeded"]


@pytest.mark.parametrize("succeeded", [True, False])
def test_hosted_page_delayed_method_then_async_result(client, receiver, sandbox, succeeded):
    cs = new_session(client, user=f"u_delayed_{succeeded}")
    r = pay_by_form(cs, method="delayed", card="")
    assert r.status_code == 303 and r.headers["Location"].endswith(cs.id)
    mid = client.v1.checkout.sessions.retrieve(cs.id)
    assert (mid.status, mid.payment_status) == ("complete", "unpaid")
    completed = receiver.wait_for_event("checkout.session.completed",
                                        where=lambda e: e["data"]["object"]["id"] == cs.id).event
    assert completed["data"]["object"]["payment_status"] == "unpaid"

    status, _ = sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/async_result", {"succeeded": succeeded})
    assert status == 200
    kind = "checkout.session.async_payment_succeeded" if succeeded else "checkout.session.async_payment_failed"
    ev = receiver.wait_for_event(kind, where=lambda e: e["data"]["object"]["id"] == cs.id).event
    final = client.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["payment_intent"]})
    assert ev["data"]["object"]["payment_status"] == final.payment_status == ("paid" if succeeded else "unpaid")
    assert final.payment_intent.status == ("succeeded" if succeeded else "requires_payment_method")
    # A second result is refused.
    status, body = sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/async_result", {"succeeded": True})
    assert status == 409 and body["error"]["type"] == "invalid_request_error"


def test_control_pay_endpoint(client, sandbox):
    cs = new_session(client)
    status, body = sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/pay", {"card": "4000000000000002"})
    assert status == 402 and body["error"]["code"] == "card_declined"
    status, body = sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/pay", {"card": "4242424242424242"})
    assert status == 200 and body["session"]["payment_status"] == "paid"
    assert body["redirect_url"].endswith(cs.id)
    status, _ = sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/pay", {"card": "4242424242424242"})
    assert status == 409


# --- refunds, disputes, payment intents -----------------------------------------------

def paid_session(client, sandbox, amount=499):
    cs = new_session(client, amount=amount)
    status, body = sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/pay", {"card": "4242 4242 4242 4242"})
    assert status == 200
    return client.v1.checkout.sessions.retrieve(cs.id)


def test_refunds_partial_then_full(client, receiver, sandbox):
    cs = paid_session(client, sandbox, amount=499)
    pi = client.v1.payment_intents.retrieve(cs.payment_intent)

    part = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 150})
    assert (part.object, part.amount, part.status, part.charge) == ("refund", 150, "succeeded", pi.latest_charge)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (150, False)

    rest = client.v1.refunds.create(params={"charge": charge.id})
    assert rest.amount == 349
    charge = client.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (499, True)
    assert [r.id for r in charge.refunds.data] == [rest.id, part.id]

    def refunded_events(received):
        return [r.event for r in received if r.event["type"] == "charge.refunded"
                and r.event["data"]["object"]["id"] == charge.id]
    receiver.wait_for(lambda rec: len(refunded_events(rec)) == 2)
    amounts = sorted(e["data"]["object"]["amount_refunded"] for e in refunded_events(receiver.received))
    assert amounts == [150, 499]  # cumulative, as Stripe sends it
    assert refunded_events(receiver.received)[0]["data"]["object"]["metadata"]["userId"] == "user_1"
    receiver.wait_for_event("refund.created", where=lambda e: e["data"]["object"]["id"] == rest.id)

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"charge": charge.id})
    assert exc.value.code == "charge_already_refunded"
    other = paid_session(client, sandbox, amount=500)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": other.payment_intent, "amount": 501})
    assert exc.value.code == "amount_too_large"
    assert [r.id for r in client.v1.refunds.list(params={"charge": charge.id}).data] == [rest.id, part.id]


def test_payment_intents_and_card_errors(client, module_style):
    pi = stripe.PaymentIntent.create(amount=1000, currency="usd", metadata={"k": "v"},
                                     payment_method="pm_card_visa", confirm=True)
    assert pi.status == "succeeded" and pi.amount_received == 1000
    assert stripe.Charge.retrieve(pi.latest_charge).metadata.to_dict() == {"k": "v"}

    with pytest.raises(stripe.CardError) as exc:
        stripe.PaymentIntent.create(amount=1000, currency="usd", payment_method="pm_card_chargeDeclined", confirm=True)
    assert exc.value.http_status == 402 and exc.value.code == "card_declined"
    declined = exc.value.json_body["error"]["payment_intent"]
    assert declined["status"] == "requires_payment_method"

    pending = client.v1.payment_intents.create(params={"amount": 700, "currency": "usd"})
    assert pending.status == "requires_payment_method"
    confirmed = client.v1.payment_intents.confirm(pending.id, params={"payment_method": "pm_card_mastercard"})
    assert confirmed.status == "succeeded"
    assert pending.id in [p.id for p in client.v1.payment_intents.list(params={"limit": 100}).data]

    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"},
                                                  "billing_details": {"email": "pm@example.com"}})
    assert pm.card.last4 == "4242" and pm.billing_details.email == "pm@example.com"
    assert client.v1.payment_methods.retrieve(pm.id).id == pm.id
    assert client.v1.payment_methods.retrieve("pm_card_visa").card.brand == "visa"


@pytest.mark.parametrize("token,status,closed_as", [
    ("pm_card_createDispute", "needs_response", "won"),
    ("pm_card_createDisputeInquiry", "warning_needs_response", "lost"),
])
def test_disputes(client, receiver, sandbox, token, status, closed_as):
    pi = client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd", "payment_method": token,
                                                  "confirm": True, "metadata": {"userId": "u_dispute"}})
    (dp,) = client.v1.disputes.list(params={"payment_intent": pi.id}).data
    assert (dp.status, dp.amount, dp.charge) == (status, 2500, pi.latest_charge)
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True
    created = receiver.wait_for_event("charge.dispute.created", where=lambda e: e["data"]["object"]["id"] == dp.id).event
    assert created["data"]["object"]["payment_intent"] == pi.id

    code, body = sandbox.control("POST", f"/_sandbox/disputes/{dp.id}/close", {"status": closed_as})
    assert code == 200 and body["status"] == closed_as
    closed = receiver.wait_for_event("charge.dispute.closed", where=lambda e: e["data"]["object"]["id"] == dp.id).event
    assert closed["data"]["object"]["status"] == closed_as
    assert client.v1.disputes.retrieve(dp.id).status == closed_as


def test_subscription_mode_session(client):
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 900, "recurring": {"interval": "month"},
                                            "product_data": {"name": "Monthly tokens"}})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [{"price": price.id, "quantity": 1}]})
    cs = client.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}],
                                                    "success_url": "https://tokenbank.test/ok"})
    assert cs.mode == "subscription" and cs.amount_total == 900
    r = pay_by_form(cs)
    assert r.status_code == 303
    done = client.v1.checkout.sessions.retrieve(cs.id)
    assert done.payment_status == "paid" and done.subscription.startswith("sub_") and done.customer.startswith("cus_")


# --- events and webhooks -----------------------------------------------------------------

def test_events_api(client, receiver, sandbox):
    time.sleep(1.05)
    start = int(time.time())
    cs = paid_session(client, sandbox)
    receiver.wait_for_event("charge.succeeded", where=lambda e: e["data"]["object"]["payment_intent"] == cs.payment_intent)
    wait_until(lambda: not client.v1.events.list(params={"created": {"gte": start}, "delivery_success": False}).data)
    events = client.v1.events.list(params={"created": {"gte": start}, "limit": 100}).data
    types = [e.type for e in events]
    assert types.index("charge.succeeded") < types.index("checkout.session.completed")  # newest first
    ev = client.v1.events.retrieve(events[0].id)
    assert (ev.object, ev.livemode, ev.api_version) == ("event", False, stripe.api_version)
    assert ev.request is not None and ev.pending_webhooks == 0

    completed = client.v1.events.list(params={"type": "checkout.session.completed", "created": {"gte": start}}).data
    assert [e.data.object.id for e in completed] == [cs.id]
    wildcard = client.v1.events.list(params={"type": "checkout.session.*", "created": {"gte": start}}).data
    assert {e.type for e in wildcard} == {"checkout.session.completed"}
    several = client.v1.events.list(params={"types": ["charge.succeeded", "payment_intent.succeeded"], "created": {"gte": start}}).data
    assert sorted(e.type for e in several) == ["charge.succeeded", "payment_intent.succeeded"]
    page = client.v1.events.list(params={"created": {"gte": start}, "limit": 2})
    assert page.has_more and len(page.data) == 2
    assert [e.id for e in page.auto_paging_iter()] == [e.id for e in events]
    delivered = client.v1.events.list(params={"created": {"gte": start}, "delivery_success": True, "limit": 100}).data
    assert {e.id for e in delivered} == {e.id for e in events}


def test_webhooks_are_signed_with_every_secret(client, receiver, sandbox):
    cs = paid_session(client, sandbox)
    got = receiver.wait_for_event("checkout.session.completed", where=lambda e: e["data"]["object"]["id"] == cs.id)
    header = got.headers["Stripe-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}", header)
    assert got.headers["Content-Type"].startswith("application/json")
    for secret in (SECRET, SECRET_2):  # during a rotation either secret verifies
        assert stripe.WebhookSignature.verify_header(got.body.decode(), header, secret, tolerance=300)
        event = stripe.Webhook.construct_event(got.body, header, secret)
        assert event.type == "checkout.session.completed" and event.data.object.id == cs.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(got.body, header, "whsec_wrong")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(got.body.replace(b"paid", b"PAID"), header, SECRET)
    ev = json.loads(got.body)
    assert ev["object"] == "event" and ev["id"].startswith("evt_") and ev["livemode"] is False
    assert {"api_version", "created", "data", "pending_webhooks", "request", "type"} <= set(ev)


def test_webhook_retried_after_500(client, sandbox, receiver):
    flaky = WebhookReceiver(statuses=[500, 503])
    try:
        sandbox.control("POST", "/_sandbox/webhook_endpoints", {"urls": [flaky.url]})
        cs = new_session(client)
        client.v1.checkout.sessions.expire(cs.id)
        got = flaky.wait_for_event("checkout.session.expired", timeout=10, where=lambda e: e["data"]["object"]["id"] == cs.id)
        attempts = [r for r in flaky.received if r.event["data"]["object"].get("id") == cs.id]
        assert [r.status for r in attempts] == [500, 503, 200]
        assert len({r.body for r in attempts}) == 1  # the same bytes each time
        assert stripe.Webhook.construct_event(got.body, got.headers["Stripe-Signature"], SECRET).data.object.id == cs.id
        ev_id = got.event["id"]

        def settled():
            (summary,) = [e for e in sandbox.events("checkout.session.expired") if e["id"] == ev_id]
            return summary
        wait_until(lambda: settled()["deliveries"][0]["status"] == "succeeded")
        summary = settled()
        (delivery,) = summary["deliveries"]
        assert delivery["status"] == "succeeded" and delivery["endpoint"] == flaky.url
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
        assert summary["pending_webhooks"] == 0
        assert client.v1.events.retrieve(ev_id).pending_webhooks == 0
    finally:
        sandbox.control("POST", "/_sandbox/webhook_endpoints", {"urls": [receiver.url]})
        flaky.close()


def test_undeliverable_webhook_is_listed_as_not_delivered(client, sandbox, receiver):
    dead = WebhookReceiver(statuses=[500] * 20)
    try:
        sandbox.control("POST", "/_sandbox/webhook_endpoints", {"urls": [dead.url]})
        cs = new_session(client)
        client.v1.checkout.sessions.expire(cs.id)
        pending = client.v1.events.list(params={"delivery_success": False, "type": "checkout.session.expired"}).data
        assert cs.id in [e.data.object.id for e in pending]
        assert all(e.pending_webhooks >= 1 for e in pending)
    finally:
        sandbox.control("POST", "/_sandbox/webhook_endpoints", {"urls": [receiver.url]})
        dead.close()


def test_first_deliveries_follow_creation_order(client, receiver, sandbox):
    cs = paid_session(client, sandbox)
    pi = cs.payment_intent
    receiver.wait_for_event("charge.succeeded", where=lambda e: e["data"]["object"]["payment_intent"] == pi)
    created_order = [e["id"] for e in sandbox.events()
                     if e["data_object_id"] in (cs.id, pi) or e["type"].startswith("charge.")]
    with receiver.lock:
        arrival = [json.loads(r.body)["id"] for r in receiver.received]
    mine = [i for i in arrival if i in created_order]
    assert mine == [i for i in created_order if i in mine] and len(mine) >= 4


def test_concurrent_payments_charge_once(client, sandbox):
    from concurrent.futures import ThreadPoolExecutor

    cs = new_session(client)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: pay_by_form(cs).status_code, range(8)))
    assert sorted(statuses) == [303] + [409] * 7
    done = client.v1.checkout.sessions.retrieve(cs.id)
    charges = client.v1.charges.list(params={"payment_intent": done.payment_intent}).data
    assert [c.status for c in charges] == ["succeeded"]


def test_environment_fallbacks():
    rx = WebhookReceiver()
    try:
        env = {"SANDBOX_WEBHOOK_URLS": f"{rx.url},http://127.0.0.1:9/unused", "STRIPE_WEBHOOK_SECRET": "whsec_env_a,whsec_env_b",
               "SANDBOX_PUBLIC_URL": "https://pay.tokenbank.test"}
        with running_sandbox(secret=None, env=env) as sandbox:
            client = stripe.StripeClient(TEST_KEY, base_addresses={"api": sandbox.url})
            cs = new_session(client)
            assert cs.url == f"https://pay.tokenbank.test/pay/{cs.id}"
            assert sandbox.control("GET", "/_sandbox/webhook_endpoints")[1] == {
                "urls": [rx.url, "http://127.0.0.1:9/unused"], "secrets_count": 2}
            client.v1.checkout.sessions.expire(cs.id)
            got = rx.wait_for_event("checkout.session.expired")
            for secret in ("whsec_env_a", "whsec_env_b"):
                stripe.Webhook.construct_event(got.body, got.headers["Stripe-Signature"], secret)
    finally:
        rx.close()


def test_form_encoding_parser():
    from sandbox.forms import parse_body

    parsed = parse_body(b"line_items[0][price_data][unit_amount]=499&line_items[0][quantity]=1"
                        b"&line_items[1][price]=price_x&metadata[userId]=u1&metadata[0]=zero"
                        b"&expand[]=line_items&expand[]=payment_intent&payment_method_types[0]=card&name=a+b%26c")
    assert parsed == {
        "line_items": [{"price_data": {"unit_amount": "499"}, "quantity": "1"}, {"price": "price_x"}],
        "metadata": {"userId": "u1", "0": "zero"},
        "expand": ["line_items", "payment_intent"],
        "payment_method_types": ["card"],
        "name": "a b&c",
    }
