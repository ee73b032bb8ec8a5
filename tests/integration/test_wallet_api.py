"""The wallet's routes on the real stack (Firestore emulator, Redis, the worker, the Stripe sandbox):
the CSV export reads the ledger page by page through Firestore's cursors and streams every entry
once, newest first, with the running balance; a purchase fulfilled from Stripe links the charge's
real receipt (another user: 404); the customer portal opens for the customer of the user's own
mirrored subscription, and its page cancels that subscription at Stripe."""
from __future__ import annotations

import csv
import io

import requests

from core.services import history
from core.services.balance import grant
from devstack import stripe_events as events
from tests.integration.conftest import PROJECT, doc, eventually
from tests.support.tokens import bearer


def auth(uid):
    return bearer(uid, PROJECT)


def test_the_csv_pages_through_firestore_and_streams_every_entry_once(web_client, deps, monkeypatch):
    monkeypatch.setattr(history, "PAGE", 7)  # several store pages from a short ledger
    for i in range(23):
        grant(deps, "exporter", i + 1, f"gift {i}", f"k{i}", "service", create_account=True)
    grant(deps, "bystander", 5, "not theirs", "k", "service", create_account=True)
    resp = web_client.get("/api/tokens/transactions.csv", headers=auth("exporter"))
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"), newline="")))
    body = table[1:]
    assert len(body) == 23 and len({r[7] for r in body}) == 23
    assert [int(r[3]) for r in body] == list(range(23, 0, -1))
    assert [int(r[4]) for r in body] == [sum(range(1, n + 1)) for n in range(23, 0, -1)]
    listed = web_client.get("/api/tokens/transactions?limit=100", headers=auth("exporter")).json["entries"]
    assert [r[7] for r in body] == [e["id"] for e in listed]


def test_a_fulfilled_purchase_links_its_charges_receipt(web_client, deps, worker, stripe_sandbox):
    started = web_client.post("/api/checkout", json={"packageId": "starter"}, headers=auth("buyer"))
    session_id = started.json["sessionId"]
    paid = requests.post(f"{stripe_sandbox.address}/_sandbox/checkout/{session_id}/pay",
                         json={"card": "4242424242424242"}, timeout=5)
    assert paid.status_code == 200, paid.text
    assert web_client.get(f"/api/purchases/{session_id}/receipt", headers=auth("buyer")).status_code == 404
    assert web_client.post(f"/api/purchases/{session_id}/confirm", headers=auth("buyer")).status_code == 202
    eventually(lambda: (doc(deps, "purchases", session_id) or {}).get("status") == "fulfilled", what="fulfilled")
    resp = web_client.get(f"/api/purchases/{session_id}/receipt", headers=auth("buyer"))
    assert resp.status_code == 200, resp.json
    url = resp.json["receiptUrl"]
    assert url.startswith(f"{stripe_sandbox.address}/receipts/payment/")
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and ">4.99 USD<" in page.text
    other = web_client.get(f"/api/purchases/{session_id}/receipt", headers=auth("someone-else"))
    assert other.status_code == 404 and "receipts" not in other.get_data(as_text=True)


def test_the_portal_opens_for_the_users_own_subscription_and_cancels_it_there(web_client, deps, worker, stripe_api,
                                                                               secret, stripe_sandbox):
    customer = stripe_api.v1.customers.create({"email": "plan@example.com", "payment_method": "pm_card_visa",
                                               "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    product = stripe_api.v1.products.create({"name": "Monthly"})
    price = stripe_api.v1.prices.create({"product": product.id, "unit_amount": 2499, "currency": "usd",
                                         "recurring": {"interval": "month"}})
    sub = stripe_api.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                              "metadata": {"userId": "planner", "planId": "monthly"}})
    raw = requests.get(f"{stripe_sandbox.address}/v1/subscriptions/{sub.id}", timeout=5,
                       headers={"Authorization": f"Bearer {deps.settings.stripe_secret_key}"}).json()
    body, headers = events.signed(events.event(raw, "customer.subscription.created"), secret)
    assert web_client.post("/api/stripe/webhook", data=body, headers=headers).status_code == 200
    eventually(lambda: ((doc(deps, "users", "planner") or {}).get("subscription") or {}).get("id") == sub.id,
               what="the subscription mirrored")

    assert web_client.post("/api/billing-portal", headers=auth("nobody")).status_code == 404
    resp = web_client.post("/api/billing-portal", headers=auth("planner"))
    assert resp.status_code == 200, resp.json
    url = resp.json["url"]
    assert url.startswith(f"{stripe_sandbox.address}/p/session/test_")
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and f'id="subscription-{sub.id}"' in page.text
    assert 'href="http://tokenbank.test/buy-tokens?from=billing-portal"' in page.text
    done = requests.post(f"{url}/subscriptions/{sub.id}/cancel", timeout=5, allow_redirects=False)
    assert done.status_code == 303
    assert stripe_api.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
