"""Webhook signing (Stripe's scheme) and delivery with retries.

Each endpoint has its own delivery thread and a queue ordered by (due time,
creation order): first attempts go out in event creation order; a failed
delivery is re-queued with exponential backoff and does not hold up newer
events. The API never waits for a delivery.
"""

from __future__ import annotations

import heapq
import hmac
import http.client
import itertools
import sys
import threading
import time
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Callable
from urllib.parse import urlsplit

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
CONTENT_TYPE = "application/json; charset=utf-8"


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode("utf-8"), signed, sha256).hexdigest()


def signature_header(payload: bytes, secrets: list[str], timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex>[,v1=<hex>...]`: one v1 per active secret (rotation)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    parts = [f"t={ts}"] + [f"v1={compute_signature(payload, s, ts)}" for s in secrets]
    return ",".join(parts)


@dataclass
class RetryPolicy:
    base_seconds: float = 1.0
    max_seconds: float = 60.0
    max_attempts: int = 8
    timeout_seconds: float = 10.0

    def delay(self, attempts_made: int) -> float:
        return min(self.base_seconds * (2 ** (attempts_made - 1)), self.max_seconds)


@dataclass
class Attempt:
    at: float
    status_code: int | None
    error: str | None
    duration_ms: int
    response_body: str = ""

    def as_dict(self) -> dict:
        return {"at": self.at, "status_code": self.status_code, "error": self.error,
                "duration_ms": self.duration_ms, "response_body": self.response_body}


@dataclass
class Delivery:
    event_id: str
    event_type: str
    url: str
    body: bytes
    seq: int
    status: str = "pending"  # pending | succeeded | failed | cancelled
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: float | None = None

    def as_dict(self) -> dict:
        return {"endpoint": self.url, "status": self.status, "next_attempt_at": self.next_attempt_at,
                "attempts": [a.as_dict() for a in self.attempts]}


def post_once(url: str, body: bytes, headers: dict, timeout: float) -> tuple[int, str]:
    """One POST without following redirects (a 3xx counts as a failure, as at Stripe)."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read(2048).decode("utf-8", errors="replace")
        return resp.status, text[:200]
    finally:
        conn.close()


class EndpointWorker:
    def __init__(self, url: str, get_secrets: Callable[[], list[str]], policy: RetryPolicy,
                 on_settled: Callable[[Delivery], None]):
        self.url = url
        self.get_secrets = get_secrets
        self.policy = policy
        self.on_settled = on_settled
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, Delivery]] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name=f"webhook:{url}", daemon=True)
        self.thread.start()

    def submit(self, delivery: Delivery, due: float) -> None:
        with self.cond:
            delivery.next_attempt_at = due
            heapq.heappush(self.heap, (due, delivery.seq, delivery))
            self.cond.notify()

    def stop(self) -> list[Delivery]:
        with self.cond:
            self.stopped = True
            left = [d for _, _, d in self.heap]
            self.heap.clear()
            self.cond.notify()
        return left

    def _next(self) -> Delivery | None:
        with self.cond:
            while True:
                if self.stopped:
                    return None
                if self.heap:
                    due = self.heap[0][0]
                    wait = due - time.time()
                    if wait <= 0:
                        return heapq.heappop(self.heap)[2]
                    self.cond.wait(timeout=wait)
                else:
                    self.cond.wait()

    def _run(self) -> None:
        while True:
            delivery = self._next()
            if delivery is None:
                return
            self._attempt(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": USER_AGENT,
            "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
            "Stripe-Signature": signature_header(delivery.body, self.get_secrets()),
        }
        started = time.time()
        status, error, text = None, None, ""
        try:
            status, text = post_once(self.url, delivery.body, headers, self.policy.timeout_seconds)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except Exception as exc:  # connection refused, timeout, bad URL...
            error = f"{type(exc).__name__}: {exc}"
        delivery.attempts.append(Attempt(at=started, status_code=status, error=error,
                                         duration_ms=int((time.time() - started) * 1000), response_body=text))
        if error is None:
            delivery.status = "succeeded"
            delivery.next_attempt_at = None
            self.on_settled(delivery)
            return
        made = len(delivery.attempts)
        if made >= self.policy.max_attempts:
            delivery.status = "failed"
            delivery.next_attempt_at = None
            print(f"[sandbox] webhook {delivery.event_id} ({delivery.event_type}) to {self.url} failed "
                  f"after {made} attempts: {error}", file=sys.stderr, flush=True)
            self.on_settled(delivery)
            return
        if not self.stopped:
            self.submit(delivery, time.time() + self.policy.delay(made))


class Dispatcher:
    """Fans each event out to every configured endpoint."""

    def __init__(self, urls: list[str], secrets: list[str], policy: RetryPolicy,
                 on_settled: Callable[[Delivery], None] = lambda d: None):
        self.policy = policy
        self.on_settled = on_settled
        self.lock = threading.Lock()
        self.secrets = list(secrets)
        self.workers: dict[str, EndpointWorker] = {}
        self.deliveries: dict[str, list[Delivery]] = {}
        self._seq = itertools.count(1)
        self.set_endpoints(urls, secrets)

    def _get_secrets(self) -> list[str]:
        return list(self.secrets)

    @property
    def urls(self) -> list[str]:
        return list(self.workers)

    def set_endpoints(self, urls: list[str], secrets: list[str] | None = None) -> None:
        cancelled: list[Delivery] = []
        with self.lock:
            if secrets is not None:
                self.secrets = [s for s in secrets if s]
            for url in list(self.workers):
                if url not in urls:
                    for d in self.workers.pop(url).stop():
                        d.status = "cancelled"
                        d.next_attempt_at = None
                        cancelled.append(d)
            for url in urls:
                if url and url not in self.workers:
                    self.workers[url] = EndpointWorker(url, self._get_secrets, self.policy, self.on_settled)
        for d in cancelled:  # outside our lock: the callback takes the store's lock
            self.on_settled(d)

    def enqueue(self, event_id: str, event_type: str, body: bytes) -> int:
        """Queues the event for every endpoint; returns the number of deliveries."""
        with self.lock:
            now = time.time()
            made = [(Delivery(event_id=event_id, event_type=event_type, url=url, body=body, seq=next(self._seq)),
                     worker) for url, worker in self.workers.items()]
            self.deliveries[event_id] = [d for d, _ in made]
            for d, worker in made:
                worker.submit(d, now)
            return len(made)

    def deliveries_for(self, event_id: str) -> list[Delivery]:
        return list(self.deliveries.get(event_id, []))

    def clear(self) -> None:
        with self.lock:
            self.deliveries.clear()

    def stop(self) -> None:
        with self.lock:
            for worker in self.workers.values():
                worker.stop()
