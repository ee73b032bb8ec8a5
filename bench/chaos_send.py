"""Deliver webhooks as Stripe does: signed at each attempt, re-sent with backoff until a 2xx.

Deliveries are released on a schedule (``rate`` per second, open loop) to ``connections``
threads, each with one persistent HTTP connection. A non-2xx answer, a timeout or a refused or
broken connection is an attempt that failed: the delivery is scheduled again after
``min(cap, base * 2**(attempt-1))`` seconds with jitter, until it is answered 2xx or the deadline
passes. Everything is counted per delivery.
"""
from __future__ import annotations

import collections
import heapq
import http.client
import queue
import random
import threading
import time

from devstack import stripe_events as events

PATH = "/api/stripe/webhook"


class Sender:
    def __init__(self, port: int, deliveries, secret: str, rate: float, connections: int = 16,
                 timeout: float = 20.0, backoff_base: float = 0.5, backoff_cap: float = 8.0):
        self.port, self.deliveries, self.secret = port, deliveries, secret
        self.rate, self.connections, self.timeout = rate, connections, timeout
        self.base, self.cap = backoff_base, backoff_cap
        n = len(deliveries)
        self.attempts = [0] * n
        self.accepted_at: list[float | None] = [None] * n
        self.statuses: collections.Counter = collections.Counter()  # answer -> count ("conn" for no answer)
        self.errors: collections.Counter = collections.Counter()  # exception type -> count
        self.heap: list[tuple[float, int, int]] = []
        self.cond = threading.Condition()
        self.work: queue.Queue = queue.Queue()
        self.done = 0
        self.given_up: list[int] = []
        self.finished = threading.Event()
        self.stop = threading.Event()
        self.started_at = self.deadline = 0.0
        self.last_accepted_at = 0.0
        self._rng = random.Random(7)
        self._seq = 0

    @property
    def window(self) -> float:
        return len(self.deliveries) / self.rate

    def start(self, resend_deadline: float) -> None:
        self.started_at = time.time()
        self.deadline = self.started_at + self.window + resend_deadline
        now = time.monotonic()
        with self.cond:
            for i in range(len(self.deliveries)):
                self._push(now + i / self.rate, i)
        self.threads = [threading.Thread(target=self._sender, daemon=True, name=f"send-{k}")
                        for k in range(self.connections)]
        self.threads.append(threading.Thread(target=self._scheduler, daemon=True, name="send-scheduler"))
        for t in self.threads:
            t.start()

    def _push(self, due: float, i: int) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (due, self._seq, i))

    def _scheduler(self) -> None:
        while not self.stop.is_set() and not self.finished.is_set():
            with self.cond:
                now = time.monotonic()
                while self.heap and self.heap[0][0] <= now:
                    self.work.put(heapq.heappop(self.heap)[2])
                wait = min(0.05, self.heap[0][0] - now) if self.heap else 0.05
                self.cond.wait(max(0.001, wait))
        for _ in range(self.connections):
            self.work.put(None)

    def _sender(self) -> None:
        conn = None
        while True:
            i = self.work.get()
            if i is None or self.stop.is_set():
                break
            d = self.deliveries[i]
            status = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                headers = {"Content-Type": "application/json", "Stripe-Signature": events.sign(d.body, self.secret)}
                conn.request("POST", PATH, d.body.encode(), headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self.errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
            self._answered(i, status)
        if conn is not None:
            conn.close()

    def _answered(self, i: int, status: int | None) -> None:
        with self.cond:
            self.attempts[i] += 1
            self.statuses[str(status) if status is not None else "no answer"] += 1
            if status is not None and 200 <= status < 300:
                self.accepted_at[i] = self.last_accepted_at = time.time()
                self.done += 1
            else:
                delay = min(self.cap, self.base * 2 ** (self.attempts[i] - 1)) * self._rng.uniform(0.5, 1.5)
                if time.time() + delay > self.deadline:
                    self.given_up.append(i)
                    self.done += 1
                else:
                    self._push(time.monotonic() + delay, i)
            if self.done == len(self.deliveries):
                self.finished.set()
            self.cond.notify()

    def progress(self) -> float:
        """Seconds since the first delivery was due, as a share of the send window."""
        return (time.time() - self.started_at) / self.window if self.started_at else 0.0

    def wait(self) -> bool:
        while not self.finished.wait(0.2):
            if self.stop.is_set() or time.time() > self.deadline + 30:
                return False
        return True

    def close(self) -> None:
        self.stop.set()
        self.finished.set()
        for _ in range(self.connections):
            self.work.put(None)

    def figures(self) -> dict:
        retried = sum(1 for a in self.attempts if a > 1)
        return {"deliveries": len(self.deliveries), "attempts": sum(self.attempts),
                "accepted": sum(1 for t in self.accepted_at if t is not None),
                "never_accepted": len(self.deliveries) - sum(1 for t in self.accepted_at if t is not None),
                "deliveries_retried": retried, "max_attempts": max(self.attempts, default=0),
                "answers": dict(self.statuses), "connection_errors": dict(self.errors),
                "send_seconds": round((self.last_accepted_at or time.time()) - self.started_at, 2),
                "rate": self.rate}
