"""`make dev`: the whole system on this machine, on embedded defaults.

Starts (or reuses) Redis, the Firestore emulator, the Firebase Auth emulator, the Stripe
sandbox, the web tier under gunicorn, a Celery worker, Celery beat and Flower; prints every
address; stops everything it started, by PID, on Ctrl-C or when any of them dies. Every value set in the environment
wins over the defaults below.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from urllib.parse import urlparse

from devstack.processes import (
    ROOT, Service, http_ok, redis_answers, start_firestore, start_redis, start_sandbox, start_web,
    start_worker, _spawn,
)

DEFAULTS = {
    "TOKENBANK_ENV": "development",
    "PORT": "8000",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080",
    "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
    "GOOGLE_CLOUD_PROJECT": "demo-tokenbank",
    "STRIPE_API_BASE": "http://127.0.0.1:12111",
    "FLOWER_PORT": "5555",
    "WORKER_METRICS_PORT": "9808",
    "FLOWER_BASIC_AUTH": "ops:tokenbank-dev",
    "PUBLIC_BASE_URL": "",
}


def metrics_dir(name: str) -> str:
    """A fresh prometheus_client multiprocess directory for one process group."""
    import shutil

    path = ROOT / ".run" / f"metrics-{name}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def dev_env() -> dict:
    env = dict(os.environ)
    for key, value in DEFAULTS.items():
        env.setdefault(key, value)
    if not env["PUBLIC_BASE_URL"]:
        env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{env['PORT']}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def main() -> int:
    env = dev_env()
    from core.config import load_settings

    settings = load_settings(env)  # fail now, with a clear message, on bad configuration
    started: list[Service] = []
    stopping = False

    def stop_all(*_):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nstopping tokenbank dev system...", flush=True)
        for service in reversed(started):
            service.stop()
        print("stopped.", flush=True)

    def interrupt(*_):
        raise KeyboardInterrupt

    # Explicit handlers: a process started in the background inherits SIGINT as ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    try:
        redis_url = urlparse(settings.redis_url)
        if redis_answers(redis_url.hostname or "127.0.0.1", redis_url.port or 6379):
            print(f"redis      {redis_url.hostname}:{redis_url.port} (already running, reused)")
        else:
            started.append(start_redis(redis_url.port or 6379))
            print(f"redis      {started[-1].address} (started, pid {started[-1].pid})")

        fs_host, fs_port = settings.firestore_emulator_host.rsplit(":", 1)
        if http_ok(f"http://{settings.firestore_emulator_host}/"):
            print(f"firestore  {settings.firestore_emulator_host} (emulator already running, reused)")
        else:
            started.append(start_firestore(int(fs_port)))
            print(f"firestore  {started[-1].address} (emulator started, pid {started[-1].pid})")

        auth_host = settings.firebase_auth_emulator_host
        if http_ok(f"http://{auth_host}/"):
            print(f"auth       {auth_host} (Firebase Auth emulator already running, reused)")
        else:
            from devstack.auth_emulator import start_auth_emulator

            started.append(start_auth_emulator(int(auth_host.rsplit(":", 1)[1]), settings.google_cloud_project))
            print(f"auth       {started[-1].address} (Firebase Auth emulator started, pid {started[-1].pid})")

        port = int(env["PORT"])
        sandbox = urlparse(settings.stripe_api_base or DEFAULTS["STRIPE_API_BASE"])
        started.append(start_sandbox(env, sandbox.port, [f"http://127.0.0.1:{port}/api/stripe/webhook"],
                                     ",".join(settings.stripe_webhook_secrets), sandbox.hostname))
        print(f"stripe     {settings.stripe_api_base} (local sandbox, pid {started[-1].pid})")

        started.append(start_worker({**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir("worker"),
                                     "WORKER_METRICS_HOST": "127.0.0.1"}, concurrency=int(env.get("WORKER_CONCURRENCY", "8"))))
        print(f"worker     celery, pid {started[-1].pid}, metrics http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics, log {started[-1].log_path}")
        beat_schedule = ROOT / ".run" / "celerybeat-schedule"
        beat_schedule.parent.mkdir(exist_ok=True)
        proc, log = _spawn("beat", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
                                    "--loglevel=INFO", f"--schedule={beat_schedule}"], env=env)
        started.append(Service("beat", proc, "", log))
        print(f"beat       celery beat, pid {proc.pid}")
        flower_port = int(env["FLOWER_PORT"])
        proc, log = _spawn("flower", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower",
                                      f"--port={flower_port}", "--address=127.0.0.1",
                                      f"--basic-auth={env['FLOWER_BASIC_AUTH']}"], env=env)
        started.append(Service("flower", proc, f"http://127.0.0.1:{flower_port}", log))
        print(f"flower     http://127.0.0.1:{flower_port} (user {env['FLOWER_BASIC_AUTH'].split(':')[0]})")

        started.append(start_web({**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir("web")}, port))
        print(f"web        http://127.0.0.1:{port}  <- open http://127.0.0.1:{port}/buy-tokens")
        print("logs in artifacts/; Ctrl-C stops everything.", flush=True)
        while True:
            for service in started:
                if not service.alive():
                    print(f"{service.name} exited (code {service.proc.returncode}); see {service.log_path}")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
