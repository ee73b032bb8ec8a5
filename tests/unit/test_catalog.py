import json

import pytest

from core.adapters.catalog_file import load_catalog
from core.domain.catalog import Package


def write_catalog(tmp_path, packages, currency="usd"):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"currency": currency, "packages": packages}))
    return path


def pkg(id="starter", tokens=50, price=499, **extra):
    return {"id": id, "name": id.title(), "tokens": tokens, "priceCents": price, **extra}


def test_default_catalog_holds_the_four_packages():
    catalog = load_catalog()
    assert [(p.id, p.tokens, p.price_cents, p.currency) for p in catalog.packages] == [
        ("starter", 50, 499, "usd"),
        ("basic", 200, 1499, "usd"),
        ("pro", 500, 2999, "usd"),
        ("premium", 1000, 4999, "usd"),
    ]


def test_get_finds_a_package_by_id():
    assert load_catalog().get("pro") == Package("pro", "Pro", 500, 2999, "usd")


@pytest.mark.parametrize("package_id", ["gold", "", "Starter", " starter", None, 1, ["starter"], {"id": "starter"}])
def test_get_returns_none_for_unknown_or_non_string_ids(package_id):
    assert load_catalog().get(package_id) is None


def test_currency_is_lower_cased_and_may_be_set_per_package(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, [pkg(), pkg("eu", currency="EUR")], currency="USD"))
    assert [p.currency for p in catalog.packages] == ["usd", "eur"]


def test_rejects_duplicate_package_ids(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        load_catalog(write_catalog(tmp_path, [pkg(), pkg(tokens=100, price=999)]))


@pytest.mark.parametrize("field,value", [
    ("tokens", 0), ("tokens", -50), ("tokens", 50.0), ("tokens", "50"), ("tokens", None),
    ("priceCents", 0), ("priceCents", -1), ("priceCents", 4.99), ("priceCents", "499"), ("priceCents", None),
])
def test_rejects_non_positive_or_non_integer_tokens_and_prices(tmp_path, field, value):
    item = pkg()
    item[field] = value
    with pytest.raises(ValueError, match="positive integer"):
        load_catalog(write_catalog(tmp_path, [item]))


@pytest.mark.parametrize("field", ["tokens", "priceCents"])
def test_rejects_booleans_as_tokens_or_prices(tmp_path, field):
    item = pkg()
    item[field] = True
    with pytest.raises(ValueError):
        load_catalog(write_catalog(tmp_path, [item]))
