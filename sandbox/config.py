"""Settings of one sandbox process: command-line flags with environment fallbacks."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

API_VERSION = "2026-10-28.endive"  # the api_version of stripe-python 16.1.0


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 12111
    webhook_urls: list[str] = field(default_factory=list)
    webhook_secrets: list[str] = field(default_factory=list)
    public_url: str | None = None  # base of hosted page URLs; default http://HOST:PORT
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    max_attempts: int = 8
    webhook_timeout_seconds: float = 10.0
    expirer_interval_seconds: float = 1.0
    async_delay_seconds: float = 1.0  # API-confirmed bank debits settle after this long
    api_version: str = API_VERSION
    log_requests: bool = False


def parse_args(argv: list[str] | None = None) -> Config:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m sandbox", description="Local Stripe API sandbox (dev/test only).")
    p.add_argument("--host", default=env.get("SANDBOX_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env.get("SANDBOX_PORT") or 12111),
                   help="0 picks a free port (printed on the 'listening' line)")
    p.add_argument("--webhook-url", action="append", dest="webhook_urls", default=None,
                   help="endpoint to POST events to; repeat for several (env SANDBOX_WEBHOOK_URLS, comma-separated)")
    p.add_argument("--webhook-secret", default=None,
                   help="whsec_... signing secret; comma-separated to sign with several (env STRIPE_WEBHOOK_SECRET)")
    p.add_argument("--public-url", default=env.get("SANDBOX_PUBLIC_URL") or None,
                   help="base URL for hosted checkout pages (env SANDBOX_PUBLIC_URL)")
    p.add_argument("--log-requests", action="store_true", default=env.get("SANDBOX_LOG_REQUESTS") == "1",
                   help="log every API request line to stderr")
    a = p.parse_args(argv)
    urls = a.webhook_urls if a.webhook_urls else _split(env.get("SANDBOX_WEBHOOK_URLS"))
    secret = a.webhook_secret if a.webhook_secret is not None else env.get("STRIPE_WEBHOOK_SECRET", "")
    return Config(
        host=a.host, port=a.port, webhook_urls=urls, webhook_secrets=_split(secret), public_url=a.public_url,
        retry_base_seconds=_float_env("SANDBOX_WEBHOOK_RETRY_BASE_SECONDS", 1.0),
        retry_max_seconds=_float_env("SANDBOX_WEBHOOK_RETRY_MAX_SECONDS", 60.0),
        max_attempts=int(_float_env("SANDBOX_WEBHOOK_MAX_ATTEMPTS", 8)),
        webhook_timeout_seconds=_float_env("SANDBOX_WEBHOOK_TIMEOUT_SECONDS", 10.0),
        expirer_interval_seconds=_float_env("SANDBOX_EXPIRER_INTERVAL_SECONDS", 1.0),
        async_delay_seconds=_float_env("SANDBOX_ASYNC_DELAY_SECONDS", 1.0),
        log_requests=a.log_requests,
    )
