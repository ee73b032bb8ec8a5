"""core.adapters.secret_manager against a fake Secret Manager client, faked at the client's API boundary:
``access_secret_version(request={"name": ...})`` answering an object with ``.payload.data``
bytes, or raising google.api_core's NotFound / PermissionDenied as the real client does."""
from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest
from google.api_core import exceptions as gexc

from core.adapters import secret_manager as secrets
from core.config import ConfigError, load_settings
from core.logs import JsonFormatter
from core.adapters.secret_manager import SECRET_NAMES, clear_cache, with_secrets

PROJECT = "tokenbank-prod"
VALUES = {
    "STRIPE_SECRET_KEY": "sk_live_from_secret_manager_1234",
    "STRIPE_WEBHOOK_SECRET": "whsec_from_secret_manager_new,whsec_from_secret_manager_old",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_from_secret_manager",
    "SERVICE_API_KEYS": "svc_" + "s" * 40,
    "FIREBASE_WEB_API_KEY": "AIza-from-secret-manager",
    "METRICS_TOKEN": "metrics-token-from-secret-manager-" + "m" * 16,
}


def version(project: str, secret_id: str, v: str = "latest") -> str:
    return f"projects/{project}/secrets/{secret_id}/versions/{v}"


class FakeSecretManager:
    """Holds secrets by full version name; records every call; raises like the real client."""

    def __init__(self, secrets_by_resource: dict[str, bytes | str] | None = None, denied: set[str] = frozenset()):
        self.secrets = {k: v.encode() if isinstance(v, str) else v for k, v in (secrets_by_resource or {}).items()}
        self.denied = set(denied)
        self.calls: list[str] = []

    def access_secret_version(self, request=None, **kwargs):
        assert request is not None and set(request) == {"name"}, request
        name = request["name"]
        self.calls.append(name)
        if name in self.denied:
            raise gexc.PermissionDenied(f"Permission 'secretmanager.versions.access' denied for resource '{name}'")
        if name not in self.secrets:
            raise gexc.NotFound(f"Secret [{name}] not found or has no versions.")
        return SimpleNamespace(name=name, payload=SimpleNamespace(data=self.secrets[name], data_crc32c=None))


def all_secrets(project: str = PROJECT, prefix: str = "", suffix: str = "\n") -> dict[str, str]:
    return {version(project, prefix + name): value + suffix for name, value in VALUES.items()}


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    clear_cache()
    now = [1000.0]
    monkeypatch.setattr(secrets, "_clock", lambda: now[0])
    yield now
    clear_cache()


@pytest.fixture
def client():
    return FakeSecretManager(all_secrets())


def factory_of(client):
    built = []

    def factory():
        built.append(client)
        return client

    factory.built = built
    return factory


def test_without_a_project_the_environment_is_returned_unchanged_and_no_client_is_built():
    def refuse():
        raise AssertionError("no client may be built without SECRET_MANAGER_PROJECT")

    env = {"TOKENBANK_ENV": "test", "STRIPE_SECRET_KEY": "sk_test_env_only"}
    out = with_secrets(env, refuse)
    assert out == env and out is not env
    assert with_secrets({}, refuse) == {}


def test_every_missing_secret_is_read_from_the_project_stripped(client):
    env = {"SECRET_MANAGER_PROJECT": PROJECT, "TOKENBANK_ENV": "production"}
    out = with_secrets(env, factory_of(client))
    assert {name: out[name] for name in SECRET_NAMES} == VALUES  # the trailing newline is gone
    assert sorted(client.calls) == sorted(version(PROJECT, name) for name in SECRET_NAMES)
    assert "STRIPE_SECRET_KEY" not in env  # a new dict; the input is untouched


def test_values_already_in_the_environment_win_and_are_not_looked_up(client):
    env = {"SECRET_MANAGER_PROJECT": PROJECT, "STRIPE_SECRET_KEY": "sk_live_from_env_var",
           "SERVICE_API_KEYS": "svc_" + "e" * 40}
    out = with_secrets(env, factory_of(client))
    assert out["STRIPE_SECRET_KEY"] == "sk_live_from_env_var"
    assert out["SERVICE_API_KEYS"] == "svc_" + "e" * 40
    assert version(PROJECT, "STRIPE_SECRET_KEY") not in client.calls
    assert version(PROJECT, "SERVICE_API_KEYS") not in client.calls
    assert out["STRIPE_PUBLISHABLE_KEY"] == VALUES["STRIPE_PUBLISHABLE_KEY"]


def test_an_empty_environment_value_counts_as_unset(client):
    out = with_secrets({"SECRET_MANAGER_PROJECT": PROJECT, "STRIPE_SECRET_KEY": ""}, factory_of(client))
    assert out["STRIPE_SECRET_KEY"] == VALUES["STRIPE_SECRET_KEY"]


def test_no_client_is_built_when_the_environment_has_every_secret():
    def refuse():
        raise AssertionError("nothing to fetch: no client")

    env = {"SECRET_MANAGER_PROJECT": PROJECT, **VALUES}
    assert with_secrets(env, refuse) == env


def test_a_missing_secret_is_a_config_error_naming_it_and_the_project():
    present = {k: v for k, v in all_secrets().items() if "FIREBASE_WEB_API_KEY" not in k}
    client = FakeSecretManager(present)
    with pytest.raises(ConfigError) as err:
        with_secrets({"SECRET_MANAGER_PROJECT": PROJECT}, factory_of(client))
    message = str(err.value)
    assert "FIREBASE_WEB_API_KEY" in message and PROJECT in message and "not found" in message
    assert version(PROJECT, "FIREBASE_WEB_API_KEY") in message
    assert "FIREBASE_WEB_API_KEY_SECRET" in message  # says how to point elsewhere


def test_permission_denied_says_which_role_the_service_account_needs():
    denied = version(PROJECT, "STRIPE_WEBHOOK_SECRET")
    client = FakeSecretManager(all_secrets(), denied={denied})
    with pytest.raises(ConfigError) as err:
        with_secrets({"SECRET_MANAGER_PROJECT": PROJECT}, factory_of(client))
    message = str(err.value)
    assert "roles/secretmanager.secretAccessor" in message
    assert "STRIPE_WEBHOOK_SECRET" in message and PROJECT in message and "service account" in message
    assert "permission denied" in message


def test_other_api_errors_are_config_errors_too():
    class Unavailable(FakeSecretManager):
        def access_secret_version(self, request=None, **kwargs):
            raise gexc.ServiceUnavailable("connection refused")

    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY.*ServiceUnavailable"):
        with_secrets({"SECRET_MANAGER_PROJECT": PROJECT}, factory_of(Unavailable()))


def test_a_client_that_cannot_be_built_is_a_config_error():
    def broken():
        raise RuntimeError("Your default credentials were not found")

    with pytest.raises(ConfigError, match="Secret Manager client for project tokenbank-prod.*credentials"):
        with_secrets({"SECRET_MANAGER_PROJECT": PROJECT}, broken)


@pytest.mark.parametrize("payload, reason", [(b"  \n", "empty"), (b"\xff\xfe", "not UTF-8")])
def test_an_empty_or_binary_secret_is_refused(payload, reason):
    client = FakeSecretManager({**all_secrets(), version(PROJECT, "STRIPE_SECRET_KEY"): payload})
    with pytest.raises(ConfigError, match=f"STRIPE_SECRET_KEY.*{reason}"):
        with_secrets({"SECRET_MANAGER_PROJECT": PROJECT}, factory_of(client))


def test_a_cache_hit_avoids_a_second_call_and_a_second_client(client):
    factory = factory_of(client)
    env = {"SECRET_MANAGER_PROJECT": PROJECT}
    first = with_secrets(env, factory)
    calls = len(client.calls)
    second = with_secrets(env, factory)
    assert first == second
    assert len(client.calls) == calls == len(SECRET_NAMES)
    assert len(factory.built) == 1  # the second call needed no client at all


def test_the_cache_expires_after_its_ttl_and_refetches(client, fresh_cache):
    env = {"SECRET_MANAGER_PROJECT": PROJECT}
    with_secrets(env, factory_of(client))
    fresh_cache[0] += secrets.CACHE_TTL_SECONDS - 1
    with_secrets(env, factory_of(client))
    assert len(client.calls) == len(SECRET_NAMES)  # still fresh
    client.secrets[version(PROJECT, "STRIPE_SECRET_KEY")] = b"sk_live_rotated_value_5678"
    fresh_cache[0] += 2
    out = with_secrets(env, factory_of(client))
    assert len(client.calls) == 2 * len(SECRET_NAMES)
    assert out["STRIPE_SECRET_KEY"] == "sk_live_rotated_value_5678"


def test_clear_cache_forgets_every_value(client):
    env = {"SECRET_MANAGER_PROJECT": PROJECT}
    with_secrets(env, factory_of(client))
    clear_cache()
    with_secrets(env, factory_of(client))
    assert len(client.calls) == 2 * len(SECRET_NAMES)


def test_the_cache_is_keyed_by_the_full_resource_name():
    a = FakeSecretManager(all_secrets("project-a"))
    b = FakeSecretManager({k: "b-" + v for k, v in all_secrets("project-b").items()})
    out_a = with_secrets({"SECRET_MANAGER_PROJECT": "project-a"}, factory_of(a))
    out_b = with_secrets({"SECRET_MANAGER_PROJECT": "project-b"}, factory_of(b))
    assert out_a["STRIPE_SECRET_KEY"] == VALUES["STRIPE_SECRET_KEY"]
    assert out_b["STRIPE_SECRET_KEY"] == "b-" + VALUES["STRIPE_SECRET_KEY"]


def test_a_name_prefix_applies_to_every_secret():
    client = FakeSecretManager(all_secrets(prefix="tokenbank-dev-"))
    out = with_secrets({"SECRET_MANAGER_PROJECT": PROJECT, "SECRET_NAME_PREFIX": "tokenbank-dev-"},
                       factory_of(client))
    assert {name: out[name] for name in SECRET_NAMES} == VALUES
    assert all("/secrets/tokenbank-dev-" in call for call in client.calls)


def test_a_name_suffix_applies_to_every_secret_as_cloudbuild_names_them():
    client = FakeSecretManager({version(PROJECT, name + "_PROD"): value for name, value in VALUES.items()})
    out = with_secrets({"SECRET_MANAGER_PROJECT": PROJECT, "SECRET_NAME_SUFFIX": "_PROD"}, factory_of(client))
    assert {name: out[name] for name in SECRET_NAMES} == VALUES
    assert version(PROJECT, "STRIPE_SECRET_KEY_PROD") in client.calls


def test_prefix_and_suffix_together():
    client = FakeSecretManager({version(PROJECT, "tb-" + name + "_TEST"): value for name, value in VALUES.items()})
    out = with_secrets({"SECRET_MANAGER_PROJECT": PROJECT, "SECRET_NAME_PREFIX": "tb-", "SECRET_NAME_SUFFIX": "_TEST"},
                       factory_of(client))
    assert {name: out[name] for name in SECRET_NAMES} == VALUES


def test_a_prefix_that_makes_an_invalid_secret_id_is_a_config_error(client):
    with pytest.raises(ConfigError, match="SECRET_NAME_PREFIX"):
        with_secrets({"SECRET_MANAGER_PROJECT": PROJECT, "SECRET_NAME_PREFIX": "bad/"}, factory_of(client))


def test_a_per_secret_override_names_the_secret_and_optionally_its_version():
    client = FakeSecretManager({
        **all_secrets(prefix="p-"),
        version(PROJECT, "stripe-live-key", "3"): "sk_live_pinned_version_three",
        version(PROJECT, "webhook-signing"): "whsec_overridden",
    })
    env = {"SECRET_MANAGER_PROJECT": PROJECT, "SECRET_NAME_PREFIX": "p-",
           "STRIPE_SECRET_KEY_SECRET": "stripe-live-key:3",
           "STRIPE_WEBHOOK_SECRET_SECRET": "webhook-signing"}
    out = with_secrets(env, factory_of(client))
    assert out["STRIPE_SECRET_KEY"] == "sk_live_pinned_version_three"
    assert out["STRIPE_WEBHOOK_SECRET"] == "whsec_overridden"  # the override is the whole id: no prefix
    assert out["SERVICE_API_KEYS"] == VALUES["SERVICE_API_KEYS"]  # the others keep the prefix
    assert version(PROJECT, "stripe-live-key", "3") in client.calls


def test_an_override_may_name_a_secret_in_another_project():
    other = version("shared-secrets", "stripe-key", "7")
    client = FakeSecretManager({**all_secrets(), other: "sk_live_shared_project_key"})
    out = with_secrets({"SECRET_MANAGER_PROJECT": PROJECT, "STRIPE_SECRET_KEY_SECRET": other}, factory_of(client))
    assert out["STRIPE_SECRET_KEY"] == "sk_live_shared_project_key"


@pytest.mark.parametrize("override", ["bad/name", "name:v1", "name:0", "projects/p/secrets/x", "a:b:c"])
def test_a_malformed_override_is_a_config_error_naming_the_variable(client, override):
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY_SECRET"):
        with_secrets({"SECRET_MANAGER_PROJECT": PROJECT, "STRIPE_SECRET_KEY_SECRET": override}, factory_of(client))
    assert client.calls == []


def test_the_result_passes_the_production_checks(client):
    env = {"SECRET_MANAGER_PROJECT": PROJECT, "TOKENBANK_ENV": "production", "GOOGLE_CLOUD_PROJECT": PROJECT,
           "PUBLIC_BASE_URL": "https://tokens.example.com", "REDIS_URL": "redis://10.0.0.3:6379/0"}
    settings = load_settings(with_secrets(env, factory_of(client)))
    assert settings.stripe_secret_key == VALUES["STRIPE_SECRET_KEY"]
    assert settings.stripe_webhook_secrets == ("whsec_from_secret_manager_new", "whsec_from_secret_manager_old")
    assert settings.service_api_keys == (VALUES["SERVICE_API_KEYS"],)


def test_nothing_logged_contains_a_secret_value(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(PROJECT))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        env = {"SECRET_MANAGER_PROJECT": PROJECT}
        with_secrets(env, factory_of(client))
        with_secrets(env, factory_of(client))  # the cached path logs too
        denied = FakeSecretManager(all_secrets(), denied={version(PROJECT, "SERVICE_API_KEYS")})
        clear_cache()
        with pytest.raises(ConfigError) as err:
            with_secrets(env, factory_of(denied))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = stream.getvalue()
    assert "STRIPE_SECRET_KEY" in text and PROJECT in text  # names are logged
    for value in VALUES.values():
        for part in value.split(","):
            assert part not in text
            assert part not in str(err.value)
