"""Integration fixtures: real Redis, the Firestore emulator and a real Celery worker.

- Redis: the machine's server (REDIS_URL host, default 127.0.0.1:6379) in databases of the
  tests' own (TEST_REDIS_DB for data, TEST_BROKER_DB for the broker), so a running
  `make dev` is untouched. Tests that stop Redis start their own server instead.
- Firestore: an emulator of the suite's own on a free port, project `demo-tokenbank-test`,
  cleared before each test.
- Celery: one worker process for the session, stopped by PID at the end.
"""
from __future__ import annotations

import dataclasses
import os

import pytest
import redis as redis_lib
from google.cloud.firestore_v1.base_query import FieldFilter

from core.bootstrap import bootstrap
from core.config import load_settings
from tests.support import processes
from tests.support.processes import clear_firestore, service_env, start_firestore, start_worker, wait_until

PROJECT = "demo-tokenbank-test"
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1:6379")
DATA_DB = int(os.environ.get("TEST_REDIS_DB", "14"))
BROKER_DB = int(os.environ.get("TEST_BROKER_DB", "13"))


@pytest.fixture(scope="session")
def redis_host():
    host, port = REDIS_HOST.split(":")
    try:
        redis_lib.Redis(host=host, port=int(port), socket_connect_timeout=1).ping()
        yield REDIS_HOST
        return
    except redis_lib.ConnectionError:
        pass
    service = processes.start_redis()
    try:
        yield service.address
    finally:
        service.stop()


@pytest.fixture(scope="session")
def firestore_emulator():
    service = processes.start_firestore()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def stripe_sandbox():
    """The local Stripe sandbox, without webhook delivery (tests post signed events themselves)."""
    service = processes.start_sandbox(service_env(redis_url="", firestore_host="", project=PROJECT))
    try:
        yield service
    finally:
        service.stop()


def integration_env(redis_host: str, firestore_host: str, sandbox_url: str, **overrides) -> dict:
    return service_env(redis_url=f"redis://{redis_host}/{DATA_DB}", firestore_host=firestore_host, project=PROJECT,
                       CELERY_BROKER_URL=f"redis://{redis_host}/{BROKER_DB}", STRIPE_API_BASE=sandbox_url,
                       FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099", PUBLIC_BASE_URL="http://tokenbank.test",
                       CELERY_QUEUE=f"tokenbank-test-{os.getpid()}",
                       **overrides)


@pytest.fixture(scope="session")
def settings(redis_host, firestore_emulator, stripe_sandbox):
    return load_settings(integration_env(redis_host, firestore_emulator.address, stripe_sandbox.address,
                                  TASK_RETRY_BACKOFF_SECONDS="0.2", TASK_RETRY_BACKOFF_MAX_SECONDS="1"))


@pytest.fixture(scope="session")
def deps(settings):
    return bootstrap(settings, configure_logs=False)


@pytest.fixture(scope="session")
def worker(redis_host, firestore_emulator, stripe_sandbox):
    env = integration_env(redis_host, firestore_emulator.address, stripe_sandbox.address, TASK_RETRY_BACKOFF_SECONDS="0.2",
                   TASK_RETRY_BACKOFF_MAX_SECONDS="1", TASK_MAX_RETRIES="6", USER_LOCK_WAIT_SECONDS="1")
    service = start_worker(env, concurrency=8)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(autouse=True)
def _clean(settings):
    clear_firestore(settings.firestore_emulator_host, PROJECT)
    data = redis_lib.Redis.from_url(settings.redis_url)
    data.flushdb()
    yield


@pytest.fixture
def celery_producer(settings):
    from broker.producer import create_producer

    return create_producer(settings)


@pytest.fixture
def web_client(deps, celery_producer):
    from web.app import create_app
    from broker.event_queue import CeleryEventQueue

    app = create_app(deps, CeleryEventQueue(celery_producer))
    return app.test_client()


@pytest.fixture
def stripe_api(settings):
    """The real SDK pointed at the tests' Stripe sandbox (the one the worker talks to)."""
    import stripe

    return stripe.StripeClient(settings.stripe_secret_key, base_addresses={"api": settings.stripe_api_base})


@pytest.fixture
def secret(settings):
    return settings.stripe_webhook_secrets[0]


def doc(deps, collection: str, doc_id: str) -> dict | None:
    snap = deps.store.db.collection(collection).document(doc_id).get()
    return snap.to_dict() if snap.exists else None


def docs(deps, collection: str, **where) -> list[dict]:
    query = deps.store.db.collection(collection)
    for field, value in where.items():
        query = query.where(filter=FieldFilter(field, "==", value))
    return [s.to_dict() | {"_id": s.id} for s in query.stream()]


def eventually(predicate, timeout: float = 15.0, what: str = "condition"):
    return wait_until(predicate, timeout, 0.05, what)


def replace_settings(settings, **changes):
    return dataclasses.replace(settings, **changes)
