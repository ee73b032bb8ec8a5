"""Errors that carry a decision: retry it, reject it for good, or answer the caller."""
from __future__ import annotations


class TransientError(Exception):
    """Try again later: the work is fine, something it needs is busy or down."""


class WebhookRefused(Exception):
    """A webhook request the web tier answers with a 4xx and never enqueues."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EnqueueFailed(Exception):
    """The event was not durably accepted (the inbox write, or a job only the broker would
    hold, failed): answer 503 so the caller (Stripe) tries again."""
