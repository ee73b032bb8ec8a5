"""Failure handling proven by injecting the fault: kill the worker, stop Redis, stop Firestore.

Each test that stops or kills a service runs its own Redis and Firestore emulator on free
ports (never the machine's shared Redis) and its own Celery worker, all stopped by PID.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import redis as redis_lib

from core.bootstrap import bootstrap
from broker.event_queue import CeleryEventQueue
from broker.producer import create_producer
from core.services.inbox import sweep
from core.config import load_settings
from tests.integration.conftest import PROJECT, doc, docs, eventually
from devstack import stripe_events as events
from tests.support import processes
from tests.support.processes import service_env, start_worker

pytestmark = pytest.mark.slow

# Short deadlines so redelivery happens within the test: hard limit 4 s, visibility 8 s.
FAST = dict(TASK_SOFT_TIME_LIMIT="3", TASK_TIME_LIMIT="4", BROKER_VISIBILITY_TIMEOUT="8",
            FIRESTORE_CALL_DEADLINE_SECONDS="1",
            TASK_RETRY_BACKOFF_SECONDS="0.2", TASK_RETRY_BACKOFF_MAX_SECONDS="1", TASK_MAX_RETRIES="10")


class Stack:
    """A private Redis + Firestore emulator, with helpers to build apps and workers on them."""

    def __init__(self):
        self.redis = processes.start_redis()
        try:
            self.firestore = processes.start_firestore()
        except Exception:
            self.redis.stop()
            raise
        self.workers: list[processes.Service] = []

    def env(self, **extra):
        return service_env(redis_url=f"redis://{self.redis.address}/0", firestore_host=self.firestore.address,
                           project=PROJECT, **{**FAST, **extra})

    def settings(self, **extra):
        return load_settings(self.env(**extra))

    def worker(self, concurrency=1, **extra):
        service = start_worker(self.env(**extra), concurrency=concurrency, name="fault-worker")
        self.workers.append(service)
        return service

    def restart_redis(self):
        port = self.redis.extra["port"]
        self.redis.stop()
        self.redis = processes.start_redis(port)

    def stop(self):
        for w in self.workers:
            w.stop()
        self.firestore.stop()
        self.redis.stop()


@pytest.fixture
def stack():
    s = Stack()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def stack_app(stack):
    from web.app import create_app
    from broker.event_queue import CeleryEventQueue
    from broker.producer import create_producer

    settings = stack.settings()
    deps = bootstrap(settings, configure_logs=False)
    # The stack's calls have a 1 s deadline: warm the fresh emulator's write path first, as a
    # long-running web tier's would be, so the test's faults are the only ones.
    eventually(lambda: deps.store.record_event("warm_up", {"status": "ignored"}) is None, timeout=30,
               what="a first Firestore write")
    client = create_app(deps, CeleryEventQueue(create_producer(settings))).test_client()
    return client, deps, settings.stripe_webhook_secrets[0]


def post(client, evt, secret):
    body, headers = events.signed(evt, secret)
    return client.post("/api/stripe/webhook", data=body, headers=headers)


def credited(deps, uid, amount):
    user = doc(deps, "users", uid)
    return user is not None and user["tokenBalance"] == amount


def test_redis_down_at_ingress_is_accepted_into_the_inbox_and_credited_once_when_back(stack, stack_app):
    """Issue 10: the inbox makes an accepted event durable without Redis; before, this was a 503."""
    client, deps, secret = stack_app
    stack.worker()
    evt = events.event(events.checkout_session("ingress", "starter"))
    stack.redis.stop()
    resp = post(client, evt, secret)
    assert resp.status_code == 200  # in the inbox; the job could not be published
    assert doc(deps, "stripe_events", evt["id"])["status"] == "received"
    assert client.get("/readyz").status_code == 503
    stack.restart_redis()
    # Beat's next sweep finds the broker's marker gone and enqueues the record at once.
    settings = stack.settings()
    broker = redis_lib.Redis.from_url(settings.broker_url)
    counts = sweep(deps, CeleryEventQueue(create_producer(settings)), settings.inbox_grace_seconds, broker=broker)
    assert counts.get("requeued") == 1
    eventually(lambda: credited(deps, "ingress", 50), timeout=30, what="credit after redis came back")
    assert len(docs(deps, "transactions", userId="ingress")) == 1
    assert client.get("/readyz").status_code == 200


def test_firestore_down_under_the_worker_is_retried_then_credited(stack, stack_app):
    client, deps, secret = stack_app
    evt = events.event(events.checkout_session("fsdown", "basic"))
    assert post(client, evt, secret).status_code == 200  # accepted into the inbox, job queued
    port = stack.firestore.extra["port"]
    stack.firestore.stop()  # then Firestore goes away before a worker takes the job
    worker = stack.worker()
    eventually(lambda: "retrying" in worker.log_path.read_text(), timeout=30, what="a retry")
    stack.firestore = processes.start_firestore(port)
    eventually(lambda: credited(deps, "fsdown", 200), timeout=40, what="credit after firestore came back")
    assert len(docs(deps, "transactions", userId="fsdown")) == 1


def test_worker_killed_mid_credit_is_redelivered_and_credits_once(stack, stack_app):
    client, deps, secret = stack_app
    session = events.checkout_session("killed", "pro")
    evt = events.event(session)
    assert post(client, evt, secret).status_code == 200  # in the inbox and queued, no worker yet
    # Freeze Firestore so the credit is caught in the middle of its transaction.
    os.kill(stack.firestore.pid, signal.SIGSTOP)
    try:
        worker = stack.worker()
        eventually(lambda: f"Task tokenbank.stripe.process_event[" in worker.log_path.read_text(),
                   timeout=20, what="task received")
        time.sleep(0.5)
        worker.kill()  # SIGKILL to the whole worker: main process and its pool child
    finally:
        os.kill(stack.firestore.pid, signal.SIGCONT)
    broker = redis_lib.Redis.from_url(f"redis://{stack.redis.address}/0")
    assert broker.hlen("unacked") == 1  # the message survived its worker
    stack.worker()  # a new worker restores it once the visibility timeout has passed
    eventually(lambda: credited(deps, "killed", 500), timeout=40, what="redelivered credit")
    eventually(lambda: broker.hlen("unacked") == 0, timeout=10, what="ack")
    time.sleep(1)
    assert len(docs(deps, "transactions", userId="killed")) == 1
    assert doc(deps, "users", "killed")["tokenBalance"] == 500


def test_pool_child_killed_mid_credit_is_requeued_at_once(stack, stack_app):
    client, deps, secret = stack_app
    evt = events.event(events.checkout_session("child", "starter"))
    assert post(client, evt, secret).status_code == 200  # in the inbox and queued, no worker yet
    os.kill(stack.firestore.pid, signal.SIGSTOP)
    try:
        worker = stack.worker()
        eventually(lambda: "Task tokenbank.stripe.process_event[" in worker.log_path.read_text(), timeout=20)
        time.sleep(0.5)
        [child] = processes.child_pids(worker.pid)
        os.kill(child, signal.SIGKILL)
    finally:
        os.kill(stack.firestore.pid, signal.SIGCONT)
    eventually(lambda: credited(deps, "child", 50), timeout=30, what="credit after the child died")
    time.sleep(1)
    assert len(docs(deps, "transactions", userId="child")) == 1
