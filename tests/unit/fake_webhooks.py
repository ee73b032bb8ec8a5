"""Fakes for outgoing webhooks: a sender that records what it was asked to send and answers as
scripted (no socket), a queue that records the outbox jobs, and deps wired with both."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.adapters.run_lock import RedisRunLock
from core.adapters.webhook_sender import Sent, headers


@dataclass
class Call:
    url: str
    secrets: list[str]
    message_id: str
    body: str
    timestamp: int
    headers: dict


class FakeSender:
    """core.ports.WebhookSender: ``answers[url]`` is a list of statuses (None: no connection) used
    in turn; the last one repeats. Unscripted URLs answer 200."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.answers: dict[str, list[int | None]] = {}

    def send(self, url, secrets, message_id, body, timestamp, timeout) -> Sent:
        self.calls.append(Call(url, list(secrets), message_id, body, timestamp,
                               headers(secrets, message_id, timestamp, body) if secrets else {}))
        script = self.answers.get(url) or [200]
        status = script.pop(0) if len(script) > 1 else script[0]
        if status is None:
            return Sent(False, None, "ConnectionRefusedError: refused", 0.001)
        ok = 200 <= status < 300
        return Sent(ok, status, None if ok else f"HTTP {status}", 0.001)

    def sent_to(self, url: str) -> list[str]:
        return [c.message_id for c in self.calls if c.url == url]


class OutboxQueue:
    """core.ports.OutboxQueue that remembers the jobs asked for."""

    def __init__(self) -> None:
        self.fan_outs: list[tuple[str, int | None]] = []
        self.deliveries: list[tuple[str, float]] = []

    def request_fan_out(self, user_id: str, up_to_seq: int | None = None) -> None:
        self.fan_outs.append((user_id, up_to_seq))

    def request_delivery(self, endpoint_id: str, countdown: float = 0, expires: float | None = None) -> None:
        self.deliveries.append((endpoint_id, countdown))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def webhook_deps(deps, clock: Clock, sender: FakeSender | None = None):
    return dataclasses.replace(deps, clock=clock, sender=sender or FakeSender(),
                               run_lock=RedisRunLock(deps.redis, 60_000))
