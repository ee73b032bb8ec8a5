import pytest

from core.config import (
    DEV_PUBLISHABLE_KEY, DEV_STRIPE_SECRET_KEY, DEV_WEBHOOK_SECRET, ConfigError, Settings, load_settings,
)

PRODUCTION = {
    "TOKENBANK_ENV": "production",
    "STRIPE_SECRET_KEY": "sk_live_unit",
    "STRIPE_WEBHOOK_SECRET": "whsec_live_unit",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_unit",
    "GOOGLE_CLOUD_PROJECT": "tokenbank-prod",
    "REDIS_URL": "redis://10.0.0.3:6379/0",
    "K_SERVICE": "tokenbank-web",
    "PUBLIC_BASE_URL": "https://tokens.example.com",
    "FIREBASE_WEB_API_KEY": "AIza-unit-test-key",
    "SERVICE_API_KEYS": "svc_" + "k" * 40,
    "METRICS_TOKEN": "m" * 40,
}


def production(**changes):
    env = {**PRODUCTION, **changes}
    return {k: v for k, v in env.items() if v is not None}


def test_empty_environment_gives_local_development_defaults():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.env == "development" and not settings.production
    assert settings.stripe_secret_key == DEV_STRIPE_SECRET_KEY
    assert settings.stripe_webhook_secrets == (DEV_WEBHOOK_SECRET,)
    assert settings.firestore_emulator_host == "127.0.0.1:8080"
    assert settings.google_cloud_project == "demo-tokenbank"
    assert (settings.purchases_per_hour, settings.purchases_per_day) == (5, 20)
    assert settings.webhook_tolerance_seconds == 300


def test_environment_values_win_over_defaults():
    settings = load_settings({
        "TOKENBANK_ENV": "test", "REDIS_URL": "redis://cache:6379/1", "PORT": "9000",
        "PURCHASE_LIMIT_PER_HOUR": "7", "PURCHASE_LIMIT_PER_DAY": "30", "USER_LOCK_WAIT_SECONDS": "2.5",
        "FIRESTORE_EMULATOR_HOST": "fs:8181", "GOOGLE_CLOUD_PROJECT": "demo-other", "LOG_LEVEL": "debug",
        "STRIPE_API_BASE": "http://stripe-mock:12111",
    })
    assert settings.env == "test"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.broker_url == "redis://cache:6379/1"  # the broker follows REDIS_URL unless set itself
    assert settings.port == 9000
    assert (settings.purchases_per_hour, settings.purchases_per_day) == (7, 30)
    assert settings.user_lock_wait_seconds == 2.5
    assert settings.firestore_emulator_host == "fs:8181"
    assert settings.google_cloud_project == "demo-other"
    assert settings.log_level == "DEBUG"
    assert settings.stripe_api_base == "http://stripe-mock:12111"


def test_broker_url_can_differ_from_redis_url():
    settings = load_settings({"REDIS_URL": "redis://a/0", "CELERY_BROKER_URL": "redis://b/1"})
    assert (settings.redis_url, settings.broker_url) == ("redis://a/0", "redis://b/1")


def test_comma_separated_webhook_secrets_become_a_tuple_for_rotation():
    settings = load_settings({"STRIPE_WEBHOOK_SECRET": " whsec_new , whsec_old,,"})
    assert settings.stripe_webhook_secrets == ("whsec_new", "whsec_old")


def test_webhook_secret_of_only_commas_is_refused():
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        load_settings({"STRIPE_WEBHOOK_SECRET": " , ,"})


@pytest.mark.parametrize("name,value", [
    ("PORT", "eighty"), ("PORT", "0"), ("PURCHASE_LIMIT_PER_HOUR", "5.5"), ("PURCHASE_LIMIT_PER_DAY", "0"),
    ("TASK_TIME_LIMIT", "1m"), ("WEBHOOK_MAX_BODY_BYTES", "100"), ("USER_LOCK_TTL_MS", "-1"),
    ("USER_LOCK_WAIT_SECONDS", "ten"), ("TASK_RETRY_BACKOFF_SECONDS", "-2"),
])
def test_bad_numbers_are_refused_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ConfigError, match="USER_LOCK_WAIT_SECONDS"):
        load_settings({"USER_LOCK_WAIT_SECONDS": value})


def test_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match="TOKENBANK_ENV"):
        load_settings({"TOKENBANK_ENV": "prod"})


def test_valid_production_configuration_loads():
    settings = load_settings(production())
    assert settings.production
    assert settings.firestore_emulator_host is None
    assert settings.stripe_webhook_secrets == ("whsec_live_unit",)


@pytest.mark.parametrize("changes,problem", [
    ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"}, "FIRESTORE_EMULATOR_HOST"),
    ({"STRIPE_API_BASE": "http://127.0.0.1:12111"}, "STRIPE_API_BASE"),
    ({"STRIPE_SECRET_KEY": DEV_STRIPE_SECRET_KEY}, "STRIPE_SECRET_KEY"),
    ({"STRIPE_SECRET_KEY": "pk_live_wrong_kind"}, "STRIPE_SECRET_KEY"),
    ({"STRIPE_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET}, "STRIPE_WEBHOOK_SECRET"),
    ({"STRIPE_WEBHOOK_SECRET": f"whsec_live_unit,{DEV_WEBHOOK_SECRET}"}, "STRIPE_WEBHOOK_SECRET"),
    ({"GOOGLE_CLOUD_PROJECT": "demo-tokenbank"}, "demo-"),
    ({"GOOGLE_CLOUD_PROJECT": None}, "demo-"),
    ({"METRICS_TOKEN": None}, "METRICS_TOKEN"),  # /metrics would be public on the web tier
    ({"METRICS_TOKEN": "short-token"}, "METRICS_TOKEN"),
])
def test_production_refuses_emulator_sandbox_and_development_settings(changes, problem):
    with pytest.raises(ConfigError, match="production configuration refused") as refused:
        load_settings(production(**changes))
    assert problem in str(refused.value)


@pytest.mark.parametrize("name", ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PUBLISHABLE_KEY"])
@pytest.mark.parametrize("missing", [None, ""])
def test_production_requires_every_stripe_secret(name, missing):
    with pytest.raises(ConfigError, match=f"{name} is required in production"):
        load_settings(production(**{name: missing}))


def test_production_refuses_the_development_publishable_key():
    with pytest.raises(ConfigError, match="STRIPE_PUBLISHABLE_KEY"):
        load_settings(production(STRIPE_PUBLISHABLE_KEY=DEV_PUBLISHABLE_KEY))


@pytest.mark.parametrize("mode", ["development", "test"])
def test_cloud_run_without_production_mode_is_refused(mode):
    with pytest.raises(ConfigError, match="K_SERVICE"):
        load_settings({"TOKENBANK_ENV": mode, "K_SERVICE": "tokenbank-web"})


def test_task_time_limit_must_be_at_most_half_the_visibility_timeout():
    assert load_settings({"TASK_TIME_LIMIT": "60", "BROKER_VISIBILITY_TIMEOUT": "120"}).task_time_limit_seconds == 60
    with pytest.raises(ConfigError, match="BROKER_VISIBILITY_TIMEOUT"):
        load_settings({"TASK_TIME_LIMIT": "61", "BROKER_VISIBILITY_TIMEOUT": "120"})


def test_soft_time_limit_must_be_below_the_hard_limit():
    with pytest.raises(ConfigError, match="TASK_SOFT_TIME_LIMIT"):
        load_settings({"TASK_SOFT_TIME_LIMIT": "60", "TASK_TIME_LIMIT": "60"})


def test_day_limit_below_hour_limit_is_refused():
    assert load_settings({"PURCHASE_LIMIT_PER_HOUR": "5", "PURCHASE_LIMIT_PER_DAY": "5"}).purchases_per_day == 5
    with pytest.raises(ConfigError, match="PURCHASE_LIMIT_PER_DAY"):
        load_settings({"PURCHASE_LIMIT_PER_HOUR": "6", "PURCHASE_LIMIT_PER_DAY": "5"})


@pytest.mark.parametrize("changes,needle", [
    ({"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}, "FIREBASE_AUTH_EMULATOR_HOST"),
    ({"FIREBASE_WEB_API_KEY": None}, "FIREBASE_WEB_API_KEY"),
    ({"PUBLIC_BASE_URL": "http://tokens.example.com"}, "https"),
    ({"PUBLIC_BASE_URL": None}, "PUBLIC_BASE_URL"),
])
def test_production_refuses_the_auth_emulator_and_insecure_public_urls(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(production(**changes))


def test_public_base_url_defaults_to_the_local_port():
    assert load_settings({"PORT": "8123"}).public_base_url == "http://127.0.0.1:8123"
