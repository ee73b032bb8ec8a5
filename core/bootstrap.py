"""The composition root: builds the clients once, at process start, from Settings.

Entry points (the web app factory, the worker's process-init hook, the CLI) call
``bootstrap()``; nothing builds a client at import.
"""
from __future__ import annotations

import os

from core.adapters.firebase_auth import firebase_verifier
from core.adapters.firebase_identity import FirebaseIdentity
from core.adapters.catalog_file import load_catalog
from core.config import Settings, load_settings
from core.deps import Deps
from core.logs import configure_logging
from core.adapters.secret_manager import with_secrets


def firebase_app(settings: Settings):
    import firebase_admin
    from firebase_admin import credentials

    # One firebase app per (project, endpoint): a process that talks to two emulators (tests)
    # must never get a client cached for the other one.
    name = f"tokenbank-{settings.google_cloud_project}-{settings.firestore_emulator_host or 'google'}"
    try:
        app = firebase_admin.get_app(name)
    except ValueError:
        if settings.firestore_emulator_host:
            os.environ["FIRESTORE_EMULATOR_HOST"] = settings.firestore_emulator_host
            credential = _emulator_credential()
        else:
            credential = credentials.ApplicationDefault()
        app = firebase_admin.initialize_app(credential, {"projectId": settings.google_cloud_project}, name=name)
    if settings.firebase_auth_emulator_host:
        # firebase-admin reads this at verification time; production configuration refuses it.
        os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = settings.firebase_auth_emulator_host
    return app


def firestore_client(settings: Settings):
    from firebase_admin import firestore

    return firestore.client(firebase_app(settings))


def _emulator_credential():
    """firebase-admin refuses to start without a credential; the emulator needs none."""
    from firebase_admin import credentials
    from google.auth.credentials import AnonymousCredentials

    class EmulatorCredential(credentials.Base):
        def get_credential(self):
            return AnonymousCredentials()

    return EmulatorCredential()


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30,
                                decode_responses=True)


def stripe_client(settings: Settings):
    import stripe

    from core.stripe_api import STRIPE_API_VERSION

    stripe.enable_telemetry = False
    kwargs = {"max_network_retries": 2, "stripe_version": STRIPE_API_VERSION}
    if settings.stripe_api_base:
        kwargs["base_addresses"] = {"api": settings.stripe_api_base}
    return stripe.StripeClient(settings.stripe_secret_key, **kwargs)


def process_settings() -> Settings:
    """This process's Settings: the environment, then Secret Manager for secrets it lacks."""
    return load_settings(with_secrets(os.environ))


def bootstrap(settings: Settings | None = None, *, configure_logs: bool = True) -> Deps:
    from core.adapters.firestore_records import FirestoreRecords, bound_call_deadlines, cap_reconnect_backoff
    from core.adapters.firestore_uow import FirestoreUnitOfWork
    from core.adapters.run_lock import RedisRunLock
    from core.adapters.redis_limits import RedisLimits
    from core.adapters.stripe_payments import StripePayments
    from core.adapters.stripe_signature import verify_signature
    from core.adapters.webhook_sender import StandardWebhookSender
    from core import metrics
    from core.outbox_kick import OutboxKick
    from core.services.account_batch import AccountBatcher

    settings = settings or process_settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.google_cloud_project)
    cap_reconnect_backoff()
    db = firestore_client(settings)
    bound_call_deadlines(db, settings.firestore_call_deadline_seconds)
    stripe = stripe_client(settings)
    redis = redis_client(settings.redis_url)
    limits = RedisLimits(redis, settings)
    kick = OutboxKick()  # entry points connect what publishes the fan-out (core/outbox_kick.py)
    uow = FirestoreUnitOfWork(db, on_events=kick)
    return Deps(
        settings=settings,
        store=FirestoreRecords(db),
        redis=redis,
        catalog=load_catalog(settings.catalog_path),
        stripe=stripe,
        verify_id_token=firebase_verifier(firebase_app(settings)),
        identity=FirebaseIdentity(firebase_app(settings)),
        uow=uow,
        payments=StripePayments(stripe),
        gate=limits,
        lock=limits,
        batch=AccountBatcher(uow, limits, on_batch=metrics.account_batch),
        verify_webhook=verify_signature,
        sender=StandardWebhookSender(),
        run_lock=RedisRunLock(redis, settings.task_time_limit_seconds * 1000),
        outbox_kick=kick,
    )
