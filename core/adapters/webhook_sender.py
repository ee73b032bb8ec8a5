"""Outgoing webhooks over HTTP, signed per the Standard Webhooks spec (the ``standardwebhooks`` package).

Each POST carries ``webhook-id`` (the message id: the same on every attempt), ``webhook-timestamp``
(unix seconds of this attempt) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of
``{id}.{timestamp}.{body}`` for each secret, space-separated (two during a secret's rotation).
A 2xx answer is success; anything else — another status, a redirect (never followed), a timeout,
no connection — is a failure with a short reason. Nothing the receiver does raises: the caller
decides about retries. The timeout bounds the connection and each read.
"""
from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from standardwebhooks import Webhook

USER_AGENT = "tokenbank-webhooks/1"
MAX_RESPONSE_BYTES = 4096


@dataclass(frozen=True)
class Sent:
    ok: bool
    status: int | None
    error: str | None
    seconds: float


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 3xx answer is the receiver's answer: a failure, never followed


def signature(secrets: Sequence[str], message_id: str, timestamp: int, body: str) -> str:
    when = datetime.fromtimestamp(timestamp, timezone.utc)
    return " ".join(Webhook(secret).sign(message_id, when, body) for secret in secrets)


def headers(secrets: Sequence[str], message_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": message_id,
            "webhook-timestamp": str(timestamp), "webhook-signature": signature(secrets, message_id, timestamp, body)}


class StandardWebhookSender:
    """core.ports.WebhookSender."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirects)

    def send(self, url: str, secrets: Sequence[str], message_id: str, body: str, timestamp: int,
             timeout: float) -> Sent:
        if not secrets:
            return Sent(False, None, "no valid signing secret", 0.0)
        request = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers=headers(secrets, message_id, timestamp, body))
        started = time.perf_counter()
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(MAX_RESPONSE_BYTES)
                status = response.status
        except urllib.error.HTTPError as answer:
            status = answer.code
        except (urllib.error.URLError, OSError, http.client.HTTPException, socket.timeout, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return Sent(False, None, f"{type(exc).__name__}: {reason}"[:300], time.perf_counter() - started)
        ok = 200 <= status < 300
        return Sent(ok, status, None if ok else f"HTTP {status}", time.perf_counter() - started)
