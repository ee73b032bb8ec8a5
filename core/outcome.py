"""What became of one event or one fulfilment call (JSON-friendly)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What became of one event or one fulfilment call (JSON-friendly)."""
    status: str  # credited | already_fulfilled | rejected | pending | failed | expired | skipped | ignored
    session_id: str | None = None
    user_id: str | None = None
    balance_after: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}
