"""The dependencies every service function receives, built once by core.bootstrap."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core.catalog import Catalog
from core.config import Settings
from core.store import LedgerStore


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: LedgerStore
    redis: Any
    catalog: Catalog
    stripe: Any = None  # stripe.StripeClient, where a service talks to Stripe
    verify_id_token: Callable[[str], str] | None = None  # Firebase ID token -> uid (raises Unauthorized)
    clock: Callable[[], float] = field(default=time.time)
