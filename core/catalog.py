"""The package catalog: the one source of truth for what a package costs and grants.

Read from ``catalog.json`` beside this module (or a path given in configuration).
The purchase page, checkout creation and fulfilment validation all read it from here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class Package:
    id: str
    name: str
    tokens: int
    price_cents: int
    currency: str


@dataclass(frozen=True)
class Catalog:
    packages: tuple[Package, ...]

    def get(self, package_id: object) -> Package | None:
        if not isinstance(package_id, str):
            return None
        for package in self.packages:
            if package.id == package_id:
                return package
        return None


def load_catalog(path: str | Path | None = None) -> Catalog:
    raw = json.loads(Path(path or DEFAULT_CATALOG_PATH).read_text())
    currency = raw["currency"].lower()
    packages = []
    for item in raw["packages"]:
        tokens, price = item["tokens"], item["priceCents"]
        if not (type(tokens) is int and tokens > 0 and type(price) is int and price > 0):
            raise ValueError(f"catalog package {item.get('id')!r} needs positive integer tokens and priceCents")
        packages.append(Package(item["id"], item["name"], tokens, price, item.get("currency", currency).lower()))
    if len({p.id for p in packages}) != len(packages):
        raise ValueError("catalog package ids must be unique")
    return Catalog(tuple(packages))
