"""Debt: a reversal that takes a balance below zero is recorded (``debt``), alerted and logged.

The alert is written in the reversal's own transaction; the log line — the one the
negative-balance alert policy follows — is written once, after the commit.
"""
from __future__ import annotations

import logging

from core.domain.records import Alert

log = logging.getLogger("tokenbank.reversals")


def debt_alert(user_id: str, entry_id: str, balance_after: int, cause: str) -> Alert:
    return Alert(f"debt_{entry_id}", "negative_balance", user_id,
                 {"debt": max(0, -balance_after), "balanceAfter": balance_after, "cause": cause, "entryId": entry_id})


def log_debt(user_id: str, balance_after: int, cause: str) -> None:
    if balance_after < 0:
        log.warning("balance negative after %s: debt recorded, spending blocked", cause,
                    extra={"user_id": user_id, "debt": -balance_after})
