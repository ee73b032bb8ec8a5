"""The worker trusts only what it verified (issue 9 §2.1): a job published straight to the
broker — as whoever reaches Redis or Flower's API could — credits nothing unless the Stripe
signature that travels with it verifies against the configured secrets and its event id and
type are the body's. A refused job raises an ``unverified_job`` alert and leaves no event
record or dead letter. Before the fix, an unsigned ``checkout.session.completed`` published
this way credited 1,000 tokens."""
from __future__ import annotations

import json
import time

import pytest

from broker import task_names
from devstack import stripe_events as events
from tests.integration.conftest import doc, docs, eventually


def publish(celery_producer, *args):
    celery_producer.send_task(task_names.PROCESS_STRIPE_EVENT, args=list(args),
                              queue=celery_producer.conf.task_default_queue)


def premium_purchase(user):
    evt = events.event(events.checkout_session(user, "premium"))
    return evt, json.dumps(evt)


def refused(deps, reason_part: str) -> dict:
    def found():
        alerts = [a for a in docs(deps, "security_alerts", type="unverified_job") if reason_part in a["details"]["reason"]]
        return alerts[0] if alerts else None
    return eventually(found, what=f"an unverified_job alert ({reason_part})")


@pytest.mark.parametrize("case", ["unsigned, old job shape", "no signature", "signed by a stranger",
                                  "signature of another body", "ids not the body's"])
def test_a_job_the_worker_cannot_verify_credits_nothing(case, deps, worker, celery_producer, secret):
    user = f"forger_{abs(hash(case)) % 10_000}"
    evt, payload = premium_purchase(user)
    other = json.dumps(events.event(events.checkout_session(user, "starter")))
    if case == "unsigned, old job shape":
        publish(celery_producer, evt["id"], evt["type"], payload)
        reason = "no Stripe-Signature"
    elif case == "no signature":
        publish(celery_producer, evt["id"], evt["type"], payload, "")
        reason = "no Stripe-Signature"
    elif case == "signed by a stranger":
        publish(celery_producer, evt["id"], evt["type"], payload, events.sign(payload, "whsec_not_ours"))
        reason = "signature"
    elif case == "signature of another body":
        publish(celery_producer, evt["id"], evt["type"], payload, events.sign(other, secret))
        reason = "signature"
    else:
        publish(celery_producer, "evt_someone_else", evt["type"], payload, events.sign(payload, secret))
        reason = "event id or type"
    alert = refused(deps, reason)
    assert alert["userId"] is None and alert["details"]["payloadDigest"]
    time.sleep(0.5)
    assert doc(deps, "users", user) is None and docs(deps, "transactions", userId=user) == []
    assert doc(deps, "stripe_events", evt["id"]) is None  # no record, no dead letter of a forged body


def test_a_signed_job_is_credited_even_after_the_webhook_tolerance(deps, worker, celery_producer, secret):
    """A job may wait, be retried or be replayed days later: the worker checks no timestamp age."""
    evt, payload = premium_purchase("patient")
    publish(celery_producer, evt["id"], evt["type"], payload, events.sign(payload, secret, int(time.time()) - 86_400))
    eventually(lambda: (doc(deps, "users", "patient") or {}).get("tokenBalance") == 1000, what="the credit")
    assert docs(deps, "security_alerts", type="unverified_job") == []
