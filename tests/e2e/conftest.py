"""The running system: gunicorn web tier, Celery worker, Firestore emulator, Redis.

Everything is started as real processes on free ports (Redis: the machine's server in the
tests' own databases) and stopped by PID at the end of the session.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from core.bootstrap import bootstrap
from core.config import Settings, load_settings
from core.deps import Deps
from devstack import processes

PROJECT = "demo-tokenbank-e2e"
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1:6379")


@dataclass
class System:
    base_url: str
    settings: Settings
    deps: Deps
    env: dict

    @property
    def secret(self) -> str:
        return self.settings.stripe_webhook_secrets[0]


@pytest.fixture(scope="session")
def system():
    started: list[processes.Service] = []
    try:
        firestore = processes.start_firestore()
        started.append(firestore)
        port = processes.free_port()
        env = processes.service_env(
            redis_url=f"redis://{REDIS_HOST}/12", firestore_host=firestore.address, project=PROJECT,
            CELERY_BROKER_URL=f"redis://{REDIS_HOST}/11", PORT=port)
        import redis

        for db in (11, 12):
            redis.Redis.from_url(f"redis://{REDIS_HOST}/{db}").flushdb()
        started.append(processes.start_worker(env, concurrency=4, name="e2e-worker"))
        started.append(processes.start_web(env, port))
        settings = load_settings(env)
        yield System(f"http://127.0.0.1:{port}", settings, bootstrap(settings, configure_logs=False), env)
    finally:
        for service in reversed(started):
            service.stop()
