"""A signed webhook over real HTTP to gunicorn ends as one credit, seen in Firestore."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack.processes import wait_until
from devstack import stripe_events as events


def balance(system, uid):
    snap = system.deps.store.db.collection("users").document(uid).get()
    return snap.to_dict()["tokenBalance"] if snap.exists else 0


def test_health_and_readiness(system):
    assert requests.get(f"{system.base_url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{system.base_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok", "firestore": "ok", "broker": "ok"}


def test_signed_event_is_credited_once_even_when_delivered_three_times(system):
    session = events.checkout_session("e2e-user", "premium")
    body, headers = events.signed(events.event(session), system.secret)
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda _: requests.post(f"{system.base_url}/api/stripe/webhook", data=body,
                                                      headers=headers, timeout=10).status_code, range(3)))
    assert codes == [200, 200, 200]
    wait_until(lambda: balance(system, "e2e-user") == 1000, 20, what="credit")
    entries = list(system.deps.store.db.collection("transactions").where(filter=FieldFilter("userId", "==", "e2e-user")).stream())
    assert len(entries) == 1


def test_forged_and_oversized_requests_over_http(system):
    url = f"{system.base_url}/api/stripe/webhook"
    assert requests.post(url, data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}, timeout=5).status_code == 400
    assert requests.post(url, data=b"x" * (300 * 1024), timeout=5).status_code == 413
    assert requests.post(url, data=b"{}", timeout=5).status_code == 400
