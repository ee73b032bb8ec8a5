"""Configuration: environment variables with local defaults.

Every value set in the environment wins over its default. The defaults describe a
local development system (Redis on 127.0.0.1, the Firestore emulator, the Stripe
sandbox). ``TOKENBANK_ENV=production`` turns the defaults for secrets off and refuses
any emulator, sandbox or development setting, so production cannot run on them by accident.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping

DEV_STRIPE_SECRET_KEY = "sk_test_tokenbank_local_sandbox"
DEV_WEBHOOK_SECRET = "whsec_tokenbank_local_development"
DEV_PUBLISHABLE_KEY = "pk_test_tokenbank_local_sandbox"
DEV_SERVICE_KEY = "svc_tokenbank_local_development"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    stripe_secret_key: str = DEV_STRIPE_SECRET_KEY
    stripe_webhook_secrets: tuple[str, ...] = (DEV_WEBHOOK_SECRET,)
    stripe_publishable_key: str = DEV_PUBLISHABLE_KEY
    stripe_api_base: str | None = None
    google_cloud_project: str = "demo-tokenbank"
    firestore_emulator_host: str | None = "127.0.0.1:8080"
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = "redis://127.0.0.1:6379/0"
    celery_queue: str = "tokenbank"
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    firebase_auth_emulator_host: str | None = "127.0.0.1:9099"
    firebase_web_api_key: str = "demo-tokenbank-web-key"
    confirmations_per_minute: int = 30
    service_api_keys: tuple[str, ...] = (DEV_SERVICE_KEY,)
    metrics_token: str | None = None
    catalog_path: str | None = None
    purchases_per_hour: int = 5
    purchases_per_day: int = 20
    webhook_max_body_bytes: int = 256 * 1024
    webhook_tolerance_seconds: int = 300
    inbox_grace_seconds: float = 10.0
    inbox_sweep_every_seconds: float = 15.0
    task_max_retries: int = 8
    task_retry_backoff_seconds: float = 2.0
    task_retry_backoff_max_seconds: float = 600.0
    task_soft_time_limit_seconds: int = 45
    task_time_limit_seconds: int = 60
    broker_visibility_timeout_seconds: int = 3600
    firestore_call_deadline_seconds: float = 10.0
    user_lock_ttl_ms: int = 15000
    user_lock_wait_seconds: float = 10.0
    outbox_sweep_every_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    webhook_retry_base_seconds: float = 5.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_retry_window_seconds: float = 3 * 86400.0
    expiring_notice_seconds: float = 3 * 86400.0
    log_level: str = "INFO"
    admin_uids: tuple[str, ...] = ()  # the support console's allow-list (besides the `admin` custom claim)
    admin_emails: tuple[str, ...] = ()  # verified emails only (core/domain/operators.py)
    admin_session_seconds: int = 3600
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite, non-negative number, got {raw!r}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())


def _required(name: str) -> str:
    raise ConfigError(f"{name} is required in production")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    mode = env.get("TOKENBANK_ENV", "development")
    if mode not in ("development", "test", "production"):
        raise ConfigError(f"TOKENBANK_ENV must be development, test or production, got {mode!r}")
    production = mode == "production"
    if not production and env.get("K_SERVICE"):
        raise ConfigError("running on Cloud Run (K_SERVICE is set) requires TOKENBANK_ENV=production")

    def secret(name: str, dev_default: str) -> str:
        value = env.get(name, "")
        if value:
            return value
        if production:
            raise ConfigError(f"{name} is required in production")
        return dev_default

    secrets = tuple(s.strip() for s in secret("STRIPE_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET).split(",") if s.strip())
    if not secrets:
        raise ConfigError("STRIPE_WEBHOOK_SECRET holds no secret")
    redis_url = env.get("REDIS_URL") or Settings.redis_url
    emulator = env.get("FIRESTORE_EMULATOR_HOST") or (None if production else Settings.firestore_emulator_host)
    settings = Settings(
        env=mode,
        stripe_secret_key=secret("STRIPE_SECRET_KEY", DEV_STRIPE_SECRET_KEY),
        stripe_webhook_secrets=secrets,
        stripe_publishable_key=secret("STRIPE_PUBLISHABLE_KEY", DEV_PUBLISHABLE_KEY),
        stripe_api_base=env.get("STRIPE_API_BASE") or None,
        google_cloud_project=env.get("GOOGLE_CLOUD_PROJECT") or Settings.google_cloud_project,
        firestore_emulator_host=emulator,
        redis_url=redis_url,
        broker_url=env.get("CELERY_BROKER_URL") or redis_url,
        celery_queue=env.get("CELERY_QUEUE") or Settings.celery_queue,
        port=_int(env, "PORT", 8000, 1),
        public_base_url=env.get("PUBLIC_BASE_URL") or (
            _required("PUBLIC_BASE_URL") if production else f"http://127.0.0.1:{_int(env, 'PORT', 8000, 1)}"),
        firebase_auth_emulator_host=env.get("FIREBASE_AUTH_EMULATOR_HOST") or (
            None if production else Settings.firebase_auth_emulator_host),
        firebase_web_api_key=secret("FIREBASE_WEB_API_KEY", Settings.firebase_web_api_key),
        confirmations_per_minute=_int(env, "CONFIRMATIONS_PER_MINUTE", 30, 1),
        metrics_token=env.get("METRICS_TOKEN") or None,
        service_api_keys=tuple(k.strip() for k in secret("SERVICE_API_KEYS", DEV_SERVICE_KEY).split(",") if k.strip()),
        catalog_path=env.get("TOKENBANK_CATALOG") or None,
        purchases_per_hour=_int(env, "PURCHASE_LIMIT_PER_HOUR", 5, 1),
        purchases_per_day=_int(env, "PURCHASE_LIMIT_PER_DAY", 20, 1),
        webhook_max_body_bytes=_int(env, "WEBHOOK_MAX_BODY_BYTES", 256 * 1024, 1024),
        webhook_tolerance_seconds=_int(env, "WEBHOOK_TOLERANCE_SECONDS", 300, 1),
        inbox_grace_seconds=_float(env, "INBOX_GRACE_SECONDS", 10.0),
        inbox_sweep_every_seconds=_float(env, "INBOX_SWEEP_EVERY_SECONDS", 15.0),
        task_max_retries=_int(env, "TASK_MAX_RETRIES", 8),
        task_retry_backoff_seconds=_float(env, "TASK_RETRY_BACKOFF_SECONDS", 2.0),
        task_retry_backoff_max_seconds=_float(env, "TASK_RETRY_BACKOFF_MAX_SECONDS", 600.0),
        task_soft_time_limit_seconds=_int(env, "TASK_SOFT_TIME_LIMIT", 45, 1),
        task_time_limit_seconds=_int(env, "TASK_TIME_LIMIT", 60, 1),
        broker_visibility_timeout_seconds=_int(env, "BROKER_VISIBILITY_TIMEOUT", 3600, 1),
        firestore_call_deadline_seconds=_float(env, "FIRESTORE_CALL_DEADLINE_SECONDS", 10.0),
        user_lock_ttl_ms=_int(env, "USER_LOCK_TTL_MS", 15000, 100),
        user_lock_wait_seconds=_float(env, "USER_LOCK_WAIT_SECONDS", 10.0),
        outbox_sweep_every_seconds=_float(env, "OUTBOX_SWEEP_EVERY_SECONDS", 5.0),
        # default: 10 s, or a third of a shorter task deadline (an explicit value is checked below)
        webhook_timeout_seconds=_float(env, "WEBHOOK_TIMEOUT_SECONDS",
                                       min(10.0, _int(env, "TASK_SOFT_TIME_LIMIT", 45, 1) / 3)),
        webhook_retry_base_seconds=_float(env, "WEBHOOK_RETRY_BASE_SECONDS", 5.0),
        webhook_retry_max_seconds=_float(env, "WEBHOOK_RETRY_MAX_SECONDS", 3600.0),
        webhook_retry_window_seconds=_float(env, "WEBHOOK_RETRY_WINDOW_SECONDS", 3 * 86400.0),
        expiring_notice_seconds=_float(env, "EXPIRING_NOTICE_SECONDS", 3 * 86400.0),
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        admin_uids=_list(env, "ADMIN_UIDS"),
        admin_emails=tuple(e.lower() for e in _list(env, "ADMIN_EMAILS")),
        admin_session_seconds=60 * _int(env, "ADMIN_SESSION_MINUTES", 60, 5),
    )
    check(settings)
    return settings


def check(settings: Settings) -> None:
    if settings.purchases_per_day < settings.purchases_per_hour:
        raise ConfigError("PURCHASE_LIMIT_PER_DAY must not be below PURCHASE_LIMIT_PER_HOUR")
    if not settings.task_soft_time_limit_seconds < settings.task_time_limit_seconds:
        raise ConfigError("TASK_SOFT_TIME_LIMIT must be below TASK_TIME_LIMIT")
    if settings.task_soft_time_limit_seconds < 3 * settings.firestore_call_deadline_seconds:
        raise ConfigError("TASK_SOFT_TIME_LIMIT must allow a transaction's three calls "
                          "(3 x FIRESTORE_CALL_DEADLINE_SECONDS)")
    if settings.admin_session_seconds > 14 * 86_400:
        raise ConfigError("ADMIN_SESSION_MINUTES must be at most 20160 (Firebase session cookies last 2 weeks at most)")
    if settings.task_time_limit_seconds * 2 > settings.broker_visibility_timeout_seconds:
        raise ConfigError("TASK_TIME_LIMIT must stay well under BROKER_VISIBILITY_TIMEOUT (at most half)")
    if settings.outbox_sweep_every_seconds <= 0 or settings.webhook_retry_base_seconds <= 0:
        raise ConfigError("OUTBOX_SWEEP_EVERY_SECONDS and WEBHOOK_RETRY_BASE_SECONDS must be above 0")
    if not 0 < settings.webhook_timeout_seconds <= settings.task_soft_time_limit_seconds / 3:
        raise ConfigError("WEBHOOK_TIMEOUT_SECONDS must be above 0 and at most a third of TASK_SOFT_TIME_LIMIT "
                          "(a delivery run sends several messages within the task's deadline)")
    if not settings.production:
        return
    problems = []
    if settings.firestore_emulator_host:
        problems.append("FIRESTORE_EMULATOR_HOST is set")
    if settings.stripe_api_base:
        problems.append("STRIPE_API_BASE is set (production talks to Stripe itself)")
    if settings.firebase_auth_emulator_host:
        problems.append("FIREBASE_AUTH_EMULATOR_HOST is set (it accepts unsigned tokens)")
    if DEV_SERVICE_KEY in settings.service_api_keys or any(len(k) < 32 for k in settings.service_api_keys):
        problems.append("SERVICE_API_KEYS must be random keys of at least 32 characters")
    if settings.firebase_web_api_key == Settings.firebase_web_api_key:
        problems.append("FIREBASE_WEB_API_KEY is the development key")
    if not settings.public_base_url.startswith("https://"):
        problems.append("PUBLIC_BASE_URL must be https")
    if settings.stripe_secret_key == DEV_STRIPE_SECRET_KEY or not settings.stripe_secret_key.startswith(("sk_live_", "sk_test_", "rk_live_", "rk_test_")):
        problems.append("STRIPE_SECRET_KEY is not a Stripe secret key")
    if settings.stripe_publishable_key == DEV_PUBLISHABLE_KEY or not settings.stripe_publishable_key.startswith("pk_"):
        problems.append("STRIPE_PUBLISHABLE_KEY is not a Stripe publishable key")
    if DEV_WEBHOOK_SECRET in settings.stripe_webhook_secrets:
        problems.append("STRIPE_WEBHOOK_SECRET is the development secret")
    if settings.google_cloud_project.startswith("demo-"):
        problems.append("GOOGLE_CLOUD_PROJECT is an emulator-only demo- project")
    if not settings.metrics_token or len(settings.metrics_token) < 32:
        problems.append("METRICS_TOKEN must be a random token of at least 32 characters (GET /metrics is public "
                        "on the web tier otherwise)")
    if problems:
        raise ConfigError("production configuration refused: " + "; ".join(problems))
