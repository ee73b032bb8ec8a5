"""The durable inbox (issue 10): nothing is acknowledged before Firestore holds it, and what it
holds is processed even when the job that should carry it is lost.

Real Redis, the Firestore emulator and a real worker; the sweep runs as beat would run it."""
from __future__ import annotations

import dataclasses
import json
import time

import redis as redis_lib

from broker.event_queue import CeleryEventQueue
from broker.producer import create_producer
from core.bootstrap import bootstrap
from core.services.inbox import SWEEP_MARKER, sweep
from devstack import stripe_events as events
from devstack.processes import free_port
from tests.integration.conftest import doc, docs, eventually


def app_with(deps, queue):
    from web.app import create_app

    return create_app(deps, queue).test_client()


def post(client, evt, secret):
    body, headers = events.signed(evt, secret)
    return client.post("/api/stripe/webhook", data=body, headers=headers)


class RefusingQueue:
    """A broker that refuses every job (Redis down at publish time)."""

    def enqueue_event(self, *args):
        raise redis_lib.ConnectionError("broker down")


def credited(deps, user, tokens):
    eventually(lambda: (doc(deps, "users", user) or {}).get("tokenBalance") == tokens, what=f"{user} credited")


def test_firestore_down_at_ingress_is_a_503_and_nothing_is_enqueued(settings, celery_producer, secret):
    down = dataclasses.replace(settings, firestore_emulator_host=f"127.0.0.1:{free_port()}",
                               firestore_call_deadline_seconds=2.0)
    producer = create_producer(dataclasses.replace(settings, celery_queue=f"inbox-probe-{time.time_ns()}"))
    client = app_with(bootstrap(down, configure_logs=False), CeleryEventQueue(producer))
    resp = post(client, events.event(events.checkout_session("fsdown_ingress", "starter")), secret)
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    with producer.pool.acquire(block=True) as conn:
        assert conn.default_channel.client.llen(producer.conf.task_default_queue) == 0


def test_a_refused_enqueue_is_still_a_200_and_the_sweeper_processes_it(deps, worker, celery_producer, secret):
    evt = events.event(events.checkout_session("swept", "basic"))
    assert post(app_with(deps, RefusingQueue()), evt, secret).status_code == 200
    assert doc(deps, "stripe_events", evt["id"])["status"] == "received"
    time.sleep(0.5)
    assert doc(deps, "users", "swept") is None  # nothing processed it yet
    counts = sweep(deps, CeleryEventQueue(celery_producer), grace_seconds=0.1)
    assert counts.get("requeued") == 1
    credited(deps, "swept", 200)
    eventually(lambda: doc(deps, "stripe_events", evt["id"])["status"] == "processed")


def test_redis_losing_the_job_is_recovered_by_a_sweep_with_no_grace(deps, worker, celery_producer, settings, secret):
    """The job sits in a queue, the broker's data is lost, beat's next sweep sees the missing
    marker and enqueues everything still received at once (no grace period)."""
    parked = create_producer(dataclasses.replace(settings, celery_queue=f"inbox-lost-{time.time_ns()}"))
    evt = events.event(events.checkout_session("lost_job", "pro"))
    assert post(app_with(deps, CeleryEventQueue(parked)), evt, secret).status_code == 200
    broker = redis_lib.Redis.from_url(settings.broker_url)
    broker.delete(parked.conf.task_default_queue, SWEEP_MARKER)  # the broker lost its data
    counts = sweep(deps, CeleryEventQueue(celery_producer), grace_seconds=3600, broker=broker)
    assert counts.get("broker_lost_data") == 1 and counts.get("requeued") == 1
    credited(deps, "lost_job", 500)
    assert sweep(deps, CeleryEventQueue(celery_producer), grace_seconds=3600, broker=broker).get("requeued") is None


def test_the_sweeper_racing_the_worker_for_one_record_credits_once(deps, worker, celery_producer, secret, web_client):
    evt = events.event(events.checkout_session("racer_inbox", "starter"))
    assert post(web_client, evt, secret).status_code == 200
    queue = CeleryEventQueue(celery_producer)
    for _ in range(3):
        sweep(deps, queue, grace_seconds=0)
    credited(deps, "racer_inbox", 50)
    time.sleep(1.5)
    assert doc(deps, "users", "racer_inbox")["tokenBalance"] == 50
    assert len(docs(deps, "transactions", userId="racer_inbox")) == 1


def test_a_redelivery_never_makes_a_second_record_or_resets_a_finished_one(deps, worker, web_client, secret):
    evt = events.event(events.checkout_session("again", "starter"))
    assert post(web_client, evt, secret).status_code == 200
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") == "processed")
    assert post(web_client, evt, secret).status_code == 200
    record = doc(deps, "stripe_events", evt["id"])
    assert (record["status"], record["deliveryCount"]) == ("processed", 2)
    assert len(docs(deps, "stripe_events", type="checkout.session.completed")) == 1


def test_a_signed_body_that_no_longer_parses_is_dead_lettered_with_the_reason(deps, worker, celery_producer, secret):
    """An inbox record whose payload does not parse is dead-lettered, never retried forever."""
    payload = json.dumps({"id": "evt_broken_body", "type": "checkout.session.completed", "data": {}})
    CeleryEventQueue(celery_producer).enqueue_event("evt_broken_body", "checkout.session.completed", payload,
                                                    events.sign(payload, secret))
    eventually(lambda: (doc(deps, "stripe_events", "evt_broken_body") or {}).get("status") == "dead_lettered")
    assert "MalformedEvent" in doc(deps, "stripe_events", "evt_broken_body")["error"]


class RefusingFulfilmentQueue:
    def request_fulfilment(self, *args):
        raise redis_lib.ConnectionError("broker down")

    request_invoice_fulfilment = request_fulfilment


def test_a_fulfilment_request_the_broker_lost_is_swept_and_closed(deps, worker, celery_producer, stripe_sandbox):
    """The success page's "fulfil from Stripe" is durable too: jobs/{id} before the publish."""
    from tests.integration.test_user_api import auth, checkout, pay

    client = app_with(deps, RefusingFulfilmentQueue())
    session_id = checkout(client, "confirmer", "basic").json["sessionId"]
    pay(stripe_sandbox, session_id)  # this sandbox sends no webhook: only the request can credit it
    assert client.post(f"/api/purchases/{session_id}/confirm", headers=auth("confirmer")).status_code == 202
    job = doc(deps, "jobs", f"fulfil_checkout_session_{session_id}")
    assert job["status"] == "requested" and job["source"] == "success_page"
    assert sweep(deps, CeleryEventQueue(celery_producer), grace_seconds=0).get("jobs_requeued") == 1
    credited(deps, "confirmer", 200)
    eventually(lambda: doc(deps, "jobs", f"fulfil_checkout_session_{session_id}")["status"] == "done")
