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
# Redis databases of the e2e tier's own (override to run two suites on one machine).
DATA_DB = int(os.environ.get("TEST_E2E_REDIS_DB", "12"))
BROKER_DB = int(os.environ.get("TEST_E2E_BROKER_DB", "11"))


@dataclass
class System:
    base_url: str
    settings: Settings
    deps: Deps
    env: dict
    sandbox_url: str

    @property
    def secret(self) -> str:
        return self.settings.stripe_webhook_secrets[0]


@pytest.fixture(scope="session")
def system():
    from devstack.auth_emulator import start_auth_emulator

    started: list[processes.Service] = []
    try:
        firestore = processes.start_firestore()
        started.append(firestore)
        auth = start_auth_emulator(project=PROJECT)
        started.append(auth)
        port = processes.free_port()
        base_url = f"http://127.0.0.1:{port}"
        sandbox_port = processes.free_port()
        env = processes.service_env(
            redis_url=f"redis://{REDIS_HOST}/{DATA_DB}", firestore_host=firestore.address, project=PROJECT,
            CELERY_BROKER_URL=f"redis://{REDIS_HOST}/{BROKER_DB}", PORT=port, PUBLIC_BASE_URL=base_url,
            STRIPE_API_BASE=f"http://127.0.0.1:{sandbox_port}", FIREBASE_AUTH_EMULATOR_HOST=auth.address,
            SANDBOX_WEBHOOK_RETRY_BASE_SECONDS="0.2", CELERY_QUEUE=f"tokenbank-e2e-{os.getpid()}")
        import redis

        for db in (BROKER_DB, DATA_DB):
            redis.Redis.from_url(f"redis://{REDIS_HOST}/{db}").flushdb()
        settings = load_settings(env)
        sandbox = processes.start_sandbox(env, sandbox_port, [f"{base_url}/api/stripe/webhook"],
                                          ",".join(settings.stripe_webhook_secrets))
        started.append(sandbox)
        run_dir = processes.ROOT / ".run" / f"e2e-{os.getpid()}"
        for group in ("web", "worker"):
            (run_dir / group).mkdir(parents=True, exist_ok=True)
        worker_metrics = processes.free_port()
        env["WORKER_METRICS_PORT"] = str(worker_metrics)
        started.append(processes.start_worker({**env, "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "worker"),
                                               "WORKER_METRICS_HOST": "127.0.0.1"}, concurrency=4, name="e2e-worker"))
        started.append(processes.start_web({**env, "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "web")}, port))
        yield System(base_url, settings, bootstrap(settings, configure_logs=False), env, sandbox.address)
    finally:
        for service in reversed(started):
            service.stop()
        import shutil

        shutil.rmtree(processes.ROOT / ".run" / f"e2e-{os.getpid()}", ignore_errors=True)
