"""Real services for tests and `make dev`: started as subprocesses, tracked by PID, always stopped."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRESTORE_JAR = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polling a service that is not up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    address: str
    log_path: Path
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL, 5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _spawn(name: str, args: list[str], env: dict | None = None, cwd: Path = ROOT) -> tuple[subprocess.Popen, Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    log.close()
    return proc, log_path


def start_redis(port: int | None = None) -> Service:
    server = shutil.which("redis-server")
    if not server:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    port = port or free_port()
    proc, log = _spawn("redis", [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    service = Service("redis", proc, f"127.0.0.1:{port}", log, {"port": port})
    import redis

    try:
        wait_until(lambda: redis.Redis(port=port, socket_connect_timeout=0.2).ping(), 10, what="redis")
    except TimeoutError:
        service.stop()
        raise
    return service


def start_firestore(port: int | None = None, rules: Path | None = ROOT / "firestore.rules") -> Service:
    if not FIRESTORE_JAR.exists() or not shutil.which("java"):
        raise RuntimeError(
            f"the Cloud Firestore emulator is missing ({FIRESTORE_JAR}): "
            "apt-get install google-cloud-cli-firestore-emulator openjdk-17-jre-headless")
    port = port or free_port()
    args = ["java", "-Duser.language=en", "-Xms64m", "-cp", str(FIRESTORE_JAR),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
            "--host=127.0.0.1", f"--port={port}"]
    if rules is not None and rules.exists():
        args.append(f"--rules={rules}")
    proc, log = _spawn("firestore", args)
    service = Service("firestore", proc, f"127.0.0.1:{port}", log, {"port": port})
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200, 30,
                   what="firestore emulator")
    except TimeoutError:
        service.stop()
        raise
    return service


def clear_firestore(host: str, project: str) -> None:
    req = urllib.request.Request(f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents",
                                 method="DELETE")
    urllib.request.urlopen(req, timeout=10).read()


def service_env(*, redis_url: str, firestore_host: str, project: str, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENBANK_", "STRIPE_", "CELERY_"))}
    env.update({
        "TOKENBANK_ENV": "test",
        "REDIS_URL": redis_url,
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "GOOGLE_CLOUD_PROJECT": project,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "INFO",
    })
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def start_worker(env: dict, concurrency: int = 4, name: str = "worker", pool: str = "prefork") -> Service:
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel=INFO",
            f"--concurrency={concurrency}", f"--pool={pool}", "-Q", env.get("CELERY_QUEUE", "tokenbank"),
            f"--hostname={name}-{os.getpid()}-{time.monotonic_ns()}@%h", "--without-mingle", "--without-gossip"]
    proc, log = _spawn(name, args, env=env)
    service = Service(name, proc, "", log)
    try:
        wait_until(lambda: b"ready." in log.read_bytes() or not service.alive(), 60, 0.1, what="celery worker")
    except TimeoutError:
        service.stop()
        raise
    if not service.alive():
        raise RuntimeError(f"celery worker exited:\n{service.log_tail()}")
    return service


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    import redis

    try:
        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def http_ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=1).status < 500
    except Exception:  # noqa: BLE001 - not up yet
        return False


def start_http_service(name: str, args: list[str], env: dict, ready_url: str, timeout: float = 60) -> Service:
    """Start a process and wait until ``ready_url`` answers (or the process dies)."""
    proc, log = _spawn(name, args, env=env)
    service = Service(name, proc, ready_url, log)
    try:
        wait_until(lambda: http_ok(ready_url) or not service.alive(), timeout, 0.1, what=name)
    except TimeoutError:
        service.stop()
        raise
    if not service.alive():
        raise RuntimeError(f"{name} exited:\n{service.log_tail()}")
    return service


def start_web(env: dict, port: int, workers: int = 2) -> Service:
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "web" / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "web.app:create_app()"]
    return start_http_service("web", args, env, f"http://127.0.0.1:{port}/healthz")


def start_sandbox(env: dict, port: int | None = None, webhook_urls: list[str] = (), secrets: str = "",
                  host: str = "127.0.0.1") -> Service:
    """The local Stripe sandbox (sandbox/), delivering signed webhooks to ``webhook_urls``."""
    port = port or free_port()
    args = [sys.executable, "-m", "sandbox", "--host", host, "--port", str(port)]
    for url in webhook_urls:
        args += ["--webhook-url", url]
    if secrets:
        args += ["--webhook-secret", secrets]
    service = start_http_service("stripe-sandbox", args, env, f"http://{host}:{port}/healthz")
    service.address = f"http://{host}:{port}"
    return service
