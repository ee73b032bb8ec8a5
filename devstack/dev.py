"""`make dev`: the whole system on this machine, on embedded defaults.

Starts (or reuses) Redis, the Firestore emulator, the Firebase Auth emulator, the Stripe
sandbox, the web tier under gunicorn, a Celery worker, Celery beat and Flower; prints every
address; runs until a signal arrives or any of them dies (a dead Celery worker is started again,
at most three times a minute, as Cloud Run and compose do). Every value set in the environment
wins over the defaults below.

What it guarantees about the processes it starts (never those it reuses):

- Each is started in a session of its own, so its process group holds everything it forks,
  and is recorded the moment it exists: one interrupted while starting is stopped too.
- They are stopped on SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal went away), when one
  of them dies (during start-up too: exit status 1), on any error, and at interpreter exit
  (the `finally` block and atexit run the same idempotent, resumable cleanup).
- Stopping: SIGTERM to every process group (the web, worker, beat, Flower and the sandbox
  first, then the emulators and Redis), SIGKILL to whatever is left after STOP_TIMEOUT
  seconds, then SIGTERM and SIGKILL to any process that left its group but still descended
  from `make dev`. A group counts as stopped only once no process of it is left; the files of
  the run (.run/dev-PORT: metrics, beat schedule) are removed after a complete stop.
- Signal handlers only set flags; they never raise into the cleanup. A further signal within
  a second of the first (a terminal or `make` delivering the same one twice) is ignored; a
  later one means "now": what is left is SIGKILLed without waiting for the deadline.
- Output can never abort the cleanup: after a failed write to stdout (EPIPE once the `tee`
  reading it is gone, EIO once the terminal hung up) stdout goes to /dev/null.

The exit status is 0 after a signal, 1 if a service died or could not start. Not covered:
SIGKILL of `make dev` itself (no code runs then; its children, in sessions of their own, stay).
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import urlparse

from devstack import processes
from devstack.processes import (
    ROOT, STOP, Interrupted, Service, http_ok, redis_answers, start_firestore, start_redis, start_sandbox,
    start_web, start_worker, _spawn,
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
STOP_TIMEOUT = 10.0        # seconds each tier gets between SIGTERM and SIGKILL
REPEAT_WINDOW = 1.0        # a further signal sooner than this after the first is the same one again
BACKING = ("redis", "firestore", "auth-emulator")  # stopped after the processes that use them


def run_dir(env: dict) -> Path:
    """.run/dev-PORT: the files of one `make dev` (two on other ports never share them)."""
    path = ROOT / ".run" / f"dev-{env['PORT']}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def metrics_dir(env: dict, name: str) -> str:
    """A fresh prometheus_client multiprocess directory for one process group."""
    path = run_dir(env) / f"metrics-{name}"
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


class Console:
    """stdout that never raises: after the first failed write it is /dev/null for good."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.gone = self.stream is None  # started with stdout closed

    def say(self, text: str = "") -> None:
        if self.gone:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - EPIPE: the reader is gone; EIO: the terminal hung up
            self.gone = True
            self._to_devnull()

    def _to_devnull(self) -> None:
        # Python's own final flush of sys.stdout must not fail (and turn the exit status into 120).
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError):
            pass


def print_exc() -> None:
    try:
        traceback.print_exc()
    except Exception:  # noqa: BLE001 - stderr may be gone too (a hung-up terminal)
        pass


class Shutdown:
    """Signal handling: the handler only writes attributes, so it is safe at any moment and re-entrant."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.first_at: float | None = None
        self.signum: int | None = None

    def install(self) -> None:
        # Explicit handlers: a process started in the background inherits SIGINT as ignored.
        for sig in self.SIGNALS:
            signal.signal(sig, self.handle)

    def handle(self, signum, _frame) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at, self.signum = now, signum
            STOP.stopping = True
        elif now - self.first_at > REPEAT_WINDOW:
            STOP.stopping = STOP.force = True


class Supervisor:
    """What this `make dev` started, and the one cleanup that stops all of it."""

    def __init__(self, console: Console, files: Path | None = None):
        self.console = console
        self.files = files
        self.started: list[Service] = []
        self.announced = False
        self.auth_port: int | None = None  # set once we start (or try to start) the Auth emulator

    def add(self, service: Service) -> Service:
        self.started.append(service)
        return service

    def check(self) -> None:
        """Between start-up steps: stop starting things once a signal arrived."""
        if STOP.stopping:
            raise Interrupted("stopped during start-up")

    def dead(self) -> Service | None:
        return next((s for s in self.started if not s.alive()), None)

    def cleanup(self) -> None:
        """Stop everything spawned here. Idempotent and resumable: stopped groups leave the registry."""
        groups = processes.live_groups()
        if not groups:
            self.remove_files()
            return
        STOP.stopping = True  # no wait_until of ours may start anything any more
        if not self.announced:
            self.announced = True
            self.console.say("\nstopping tokenbank dev system...")
        strays = {}
        try:
            strays = processes.descendants(os.getpid())  # before signalling: orphans lose their parent
        except Exception:  # noqa: BLE001 - /proc unreadable: the groups are still stopped
            pass
        backing = [s.group for s in self.started if s.name in BACKING]
        left = []
        for tier in ([g for g in groups if g not in backing], [g for g in groups if g in backing]):
            try:
                left += processes.stop_groups(tier, signal.SIGTERM, STOP_TIMEOUT)
            except Exception:  # noqa: BLE001 - never abandon the other tiers
                left += tier
                print_exc()
        try:
            stuck = processes.stop_pids(strays)
        except Exception:  # noqa: BLE001
            stuck = []
        for service in self.started:  # each service's own tidying (the auth emulator's run dir)
            try:
                service.stop()
            except Exception:  # noqa: BLE001
                pass
        if left or stuck:
            self.console.say(f"could not stop: {left} {stuck}")
            return
        self.remove_files()
        self.console.say("stopped.")

    def remove_files(self) -> None:
        """The run's own files, and the run dir of an Auth emulator interrupted while starting."""
        if self.files is not None:
            shutil.rmtree(self.files, ignore_errors=True)
        if self.auth_port is not None:
            for path in (ROOT / ".run").glob(f"auth-emulator-{self.auth_port}-*"):
                shutil.rmtree(path, ignore_errors=True)


def start_all(env: dict, settings, sup: Supervisor) -> None:
    say = sup.console.say
    redis_url = urlparse(settings.redis_url)
    if redis_answers(redis_url.hostname or "127.0.0.1", redis_url.port or 6379):
        say(f"redis      {redis_url.hostname}:{redis_url.port} (already running, reused)")
    else:
        service = sup.add(start_redis(redis_url.port or 6379))
        say(f"redis      {service.address} (started, pid {service.pid})")

    sup.check()
    fs_host, fs_port = settings.firestore_emulator_host.rsplit(":", 1)
    if http_ok(f"http://{settings.firestore_emulator_host}/"):
        say(f"firestore  {settings.firestore_emulator_host} (emulator already running, reused)")
    else:
        service = sup.add(start_firestore(int(fs_port)))
        say(f"firestore  {service.address} (emulator started, pid {service.pid})")

    sup.check()
    auth_host = settings.firebase_auth_emulator_host
    if http_ok(f"http://{auth_host}/"):
        say(f"auth       {auth_host} (Firebase Auth emulator already running, reused)")
    else:
        from devstack.auth_emulator import start_auth_emulator

        sup.auth_port = int(auth_host.rsplit(":", 1)[1])
        service = sup.add(start_auth_emulator(sup.auth_port, settings.google_cloud_project))
        say(f"auth       {service.address} (Firebase Auth emulator started, pid {service.pid})")

    sup.check()
    port = int(env["PORT"])
    sandbox = urlparse(settings.stripe_api_base or DEFAULTS["STRIPE_API_BASE"])
    service = sup.add(start_sandbox(env, sandbox.port, [f"http://127.0.0.1:{port}/api/stripe/webhook"],
                                    ",".join(settings.stripe_webhook_secrets), sandbox.hostname))
    say(f"stripe     {settings.stripe_api_base} (local sandbox, pid {service.pid})")

    sup.check()
    service = sup.add(start_worker_service(env))
    say(f"worker     celery, pid {service.pid}, metrics http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics, "
        f"log {service.log_path}")

    sup.check()
    proc, log = _spawn("beat", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
                                "--loglevel=INFO", f"--schedule={run_dir(env) / 'celerybeat-schedule'}"], env=env)
    sup.add(Service("beat", proc, "", log))
    say(f"beat       celery beat, pid {proc.pid}")

    sup.check()
    flower_port = int(env["FLOWER_PORT"])
    proc, log = _spawn("flower", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower",
                                  f"--port={flower_port}", "--address=127.0.0.1",
                                  f"--basic-auth={env['FLOWER_BASIC_AUTH']}"], env=env)
    sup.add(Service("flower", proc, f"http://127.0.0.1:{flower_port}", log))
    say(f"flower     http://127.0.0.1:{flower_port} (user {env['FLOWER_BASIC_AUTH'].split(':')[0]})")

    sup.check()
    sup.add(start_web({**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir(env, "web")}, port))
    say(f"web        http://127.0.0.1:{port}  <- open http://127.0.0.1:{port}/buy-tokens")
    say(f"support    http://127.0.0.1:{port}/admin  (an account's access: "
        "tokenbank support grant EMAIL --operator NAME)")
    say("logs in artifacts/; Ctrl-C stops everything.")


def start_worker_service(env: dict) -> Service:
    return start_worker({**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir(env, "worker"),
                         "WORKER_METRICS_HOST": "127.0.0.1"}, concurrency=int(env.get("WORKER_CONCURRENCY", "8")))


WORKER_RESTARTS_PER_MINUTE = 3


def restart_worker(sup: Supervisor, dead: Service, env: dict, recent: list[float]) -> bool:
    """A dead worker is started again, as Cloud Run and compose do (its unacknowledged jobs are
    redelivered and it asks for an inbox sweep at start): celery/kombu 5.7.0's main process can
    die when Redis restarts with a task in flight. More than a few deaths a minute stop the system."""
    now = time.monotonic()
    recent[:] = [t for t in recent if now - t < 60]
    if len(recent) >= WORKER_RESTARTS_PER_MINUTE:
        return False
    recent.append(now)
    dead.stop()
    sup.started.remove(dead)
    service = sup.add(start_worker_service(env))
    sup.console.say(f"worker     restarted, pid {service.pid} (the previous one exited with code "
                    f"{dead.proc.returncode}; see {dead.log_path})")
    return True


def main() -> int:
    console = Console()
    env = dev_env()
    from core.config import load_settings

    settings = load_settings(env)  # fail now, with a clear message, on bad configuration
    sup = Supervisor(console, run_dir(env))
    Shutdown().install()
    atexit.register(sup.cleanup)  # the same cleanup again at exit: a no-op once everything is stopped
    code = 0
    try:
        start_all(env, settings, sup)
        restarts: list[float] = []
        while not STOP.stopping:
            dead = sup.dead()
            if dead is not None and not (dead.name == "worker" and restart_worker(sup, dead, env, restarts)):
                console.say(f"{dead.name} exited (code {dead.proc.returncode}); see {dead.log_path}")
                code = 1
                break
            time.sleep(0.2)
    except Interrupted:
        code = 0
    except Exception as exc:  # noqa: BLE001 - reported, then everything is stopped
        console.say(f"make dev failed: {exc}")
        print_exc()
        code = 1
    finally:
        sup.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
