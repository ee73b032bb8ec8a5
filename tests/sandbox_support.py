"""Helpers for tests that run the local Stripe sandbox as a real subprocess.

    with running_sandbox(webhook_urls=[receiver.url], secret="whsec_x") as sb:
        stripe.StripeClient("sk_test_...", base_addresses={"api": sb.url})

The sandbox listens on a port of its own choosing (--port 0) and reports it on
its first stdout line; it is stopped by PID (SIGTERM, then SIGKILL) on exit,
also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STRIPE_CLI = REPO / "sandbox" / "node_modules" / ".bin" / "stripe"
TEST_KEY = "sk_test_sandbox_0123456789"


@dataclass
class SandboxProcess:
    proc: subprocess.Popen
    url: str
    stderr_path: Path

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    # --- /_sandbox control helpers ---------------------------------------------
    def control(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def events(self, type: str | None = None) -> list[dict]:
        _, body = self.control("GET", "/_sandbox/events" + (f"?type={type}" if type else ""))
        return body["data"]

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def start_sandbox(webhook_urls: list[str] | None = None, secret: str | None = "whsec_sandbox_test_secret",
                  env: dict | None = None, args: list[str] | None = None, timeout: float = 30.0) -> SandboxProcess:
    cmd = [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", "0"]
    for url in webhook_urls or []:
        cmd += ["--webhook-url", url]
    if secret is not None:
        cmd += ["--webhook-secret", secret]
    cmd += args or []
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("SANDBOX_PORT", "SANDBOX_WEBHOOK_URLS", "STRIPE_WEBHOOK_SECRET", "SANDBOX_PUBLIC_URL")}
    full_env.setdefault("SANDBOX_WEBHOOK_RETRY_BASE_SECONDS", "0.2")
    full_env.setdefault("SANDBOX_EXPIRER_INTERVAL_SECONDS", "0.2")
    full_env.setdefault("SANDBOX_ASYNC_DELAY_SECONDS", "0.2")
    full_env.update(env or {})
    stderr_file = tempfile.NamedTemporaryFile(prefix="sandbox-stderr-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
    stderr_file.close()
    result: dict = {}

    def read_first_line():
        result["line"] = proc.stdout.readline()

    reader = threading.Thread(target=read_first_line, daemon=True)
    reader.start()
    reader.join(timeout)
    line = result.get("line") or ""
    if "listening on " not in line:
        stop_process(proc)
        raise RuntimeError(f"sandbox did not start: {line!r}\n{Path(stderr_file.name).read_text(errors='replace')}")
    url = line.split("listening on ", 1)[1].split()[0]
    # Drain stdout so the child never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return SandboxProcess(proc=proc, url=url, stderr_path=Path(stderr_file.name))


@contextlib.contextmanager
def running_sandbox(**kwargs):
    sb = start_sandbox(**kwargs)
    try:
        yield sb
    finally:
        sb.stop()
        with contextlib.suppress(OSError):
            sb.stderr_path.unlink()


# --- a webhook receiver ------------------------------------------------------------

@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    status: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A tiny HTTP server that records every POST. `statuses` are answered in turn, then 200."""
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self):
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append(Received(self.path, dict(self.headers), body, status))
                    receiver.lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/stripe"

    def wait_for(self, predicate, timeout: float = 10.0) -> list[Received]:
        """Waits until predicate(received) is truthy; returns the received list."""
        deadline = time.time() + timeout
        with self.lock:
            while not predicate(self.received):
                left = deadline - time.time()
                if left <= 0:
                    types = [json.loads(r.body).get("type") for r in self.received]
                    raise AssertionError(f"timed out waiting for webhooks; received {types}")
                self.lock.wait(left)
            return list(self.received)

    def wait_for_event(self, event_type: str, timeout: float = 10.0, where=lambda ev: True) -> Received:
        def find(received):
            for r in received:
                if r.status == 200:
                    ev = json.loads(r.body)
                    if ev.get("type") == event_type and where(ev):
                        return r
            return None
        self.wait_for(find, timeout)
        with self.lock:
            return find(self.received)

    def events_of_type(self, event_type: str) -> list[dict]:
        with self.lock:
            return [json.loads(r.body) for r in self.received if json.loads(r.body).get("type") == event_type]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
