"""Secrets from Google Secret Manager, else from the environment.

``with_secrets(env)`` returns a copy of ``env`` in which every secret tokenbank uses
(``SECRET_NAMES``) that the environment does not already set is read from Secret Manager,
when ``SECRET_MANAGER_PROJECT`` names a project. Without it the copy is the environment
itself, unchanged, and ``core.config.load_settings`` applies its defaults and production
checks as before.

- The environment wins: a value already set (Cloud Run's ``--set-secrets`` injects them as
  variables, the tests and ``make dev`` set them directly) is never looked up.
- ``projects/{SECRET_MANAGER_PROJECT}/secrets/{SECRET_NAME_PREFIX}{NAME}{SECRET_NAME_SUFFIX}/versions/latest``
  is read for ``NAME`` (prefix and suffix are optional: cloudbuild.yaml names the production
  secrets ``STRIPE_SECRET_KEY_PROD``..., i.e. suffix ``_PROD``); ``<NAME>_SECRET=secret-id[:version]``
  (or a full ``projects/.../secrets/.../versions/...`` name) overrides the secret for one name.
- The payload is decoded as UTF-8 and stripped (``echo`` adds a newline).
- A missing secret, a denied one, an empty one or any other failure is a ``ConfigError``
  naming the secret and the project, and what to do; never the value.
- Values are cached per process for ``CACHE_TTL_SECONDS`` (keyed by full resource name),
  so a process that reloads its configuration does not call Secret Manager each time;
  ``clear_cache()`` forgets them.
- The real client (``google-cloud-secret-manager``) is built lazily, only when a secret
  must actually be fetched.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable, Mapping

from core.config import ConfigError

log = logging.getLogger("tokenbank.secrets")

SECRET_NAMES = (
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_PUBLISHABLE_KEY",
    "SERVICE_API_KEYS",
    "FIREBASE_WEB_API_KEY",
    "METRICS_TOKEN",
)
PROJECT_VAR = "SECRET_MANAGER_PROJECT"
PREFIX_VAR = "SECRET_NAME_PREFIX"
SUFFIX_VAR = "SECRET_NAME_SUFFIX"
OVERRIDE_SUFFIX = "_SECRET"  # STRIPE_SECRET_KEY_SECRET=stripe-live-key:3
ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"
CACHE_TTL_SECONDS = 300.0

_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_VERSION = re.compile(r"^(latest|[1-9][0-9]*)$")
_RESOURCE = re.compile(r"^projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|[1-9][0-9]*)$")

_clock: Callable[[], float] = time.monotonic
_cache: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def default_client():
    """The real Secret Manager client; it finds its credentials itself (ADC)."""
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient()


def override_var(name: str) -> str:
    return name + OVERRIDE_SUFFIX


def resource_name(env: Mapping[str, str], name: str) -> str:
    """The full version name Secret Manager is asked for, for one of SECRET_NAMES."""
    project = (env.get(PROJECT_VAR) or "").strip()
    if not project:
        raise ConfigError(f"{PROJECT_VAR} is not set")
    override = (env.get(override_var(name)) or "").strip()
    if override.startswith("projects/"):
        if not _RESOURCE.match(override):
            raise ConfigError(f"{override_var(name)} must be secret-id[:version] or "
                              f"projects/P/secrets/ID/versions/V, got {override!r}")
        return override
    if override:
        secret_id, _, version = override.partition(":")
        version = version or "latest"
    else:
        secret_id = (env.get(PREFIX_VAR) or "").strip() + name + (env.get(SUFFIX_VAR) or "").strip()
        version = "latest"
    if not _SECRET_ID.match(secret_id) or not _VERSION.match(version):
        source = override_var(name) if override else f"{PREFIX_VAR} + {name} + {SUFFIX_VAR}"
        raise ConfigError(f"{source} does not make a valid secret id and version "
                          f"(letters, digits, - and _; version 'latest' or a number): {secret_id!r}:{version!r}")
    return f"projects/{project}/secrets/{secret_id}/versions/{version}"


def with_secrets(env: Mapping[str, str], client_factory: Callable[[], object] | None = None) -> dict[str, str]:
    """``env`` as a new dict, with the secrets it lacks read from Secret Manager (if configured)."""
    result = dict(env)
    project = (env.get(PROJECT_VAR) or "").strip()
    if not project:
        return result
    missing = [name for name in SECRET_NAMES if not env.get(name)]
    if not missing:
        return result
    client = None
    fetched = []
    for name in missing:
        resource = resource_name(env, name)
        value = _cached(resource)
        if value is None:
            if client is None:
                client = _build_client(client_factory or default_client, project)
            value = _access(client, resource, name, project)
            with _lock:
                _cache[resource] = (_clock() + CACHE_TTL_SECONDS, value)
            fetched.append(name)
        result[name] = value
    # Names only, never values.
    log.info("secrets from Secret Manager project %s: %s (%d fetched, %d cached)", project,
             ", ".join(missing), len(fetched), len(missing) - len(fetched),
             extra={"secret_names": missing, "secret_project": project})
    return result


def _cached(resource: str) -> str | None:
    with _lock:
        hit = _cache.get(resource)
        if hit is None:
            return None
        expires, value = hit
        if _clock() >= expires:
            del _cache[resource]
            return None
        return value


def _build_client(factory: Callable[[], object], project: str):
    try:
        return factory()
    except Exception as exc:  # credentials missing, library missing...
        raise ConfigError(f"cannot create the Secret Manager client for project {project} "
                          f"({PROJECT_VAR}): {type(exc).__name__}: {exc}") from exc


def _access(client, resource: str, name: str, project: str) -> str:
    from google.api_core import exceptions as gexc

    try:
        response = client.access_secret_version(request={"name": resource})
    except gexc.NotFound:
        raise ConfigError(
            f"secret for {name} not found in Secret Manager project {project}: {resource} "
            f"(create it, point {override_var(name)} at another secret, or set {name} in the environment)"
        ) from None
    except gexc.PermissionDenied:
        raise ConfigError(
            f"permission denied reading the secret for {name} ({resource}) in project {project}: "
            f"grant the service account this process runs as the role {ACCESSOR_ROLE} "
            f"on that secret or on the project"
        ) from None
    except gexc.GoogleAPICallError as exc:
        raise ConfigError(f"could not read the secret for {name} ({resource}) in project {project}: "
                          f"{type(exc).__name__}: {exc.message}") from None
    try:
        value = bytes(response.payload.data).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"the secret for {name} ({resource}) is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"the secret for {name} ({resource}) in project {project} is empty")
    return value
