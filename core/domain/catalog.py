"""The catalog: the one source of truth for what a package or a token plan costs and grants.

Parsed from ``core/catalog.json`` (or a path given in configuration) by core.adapters.catalog_file.
The purchase page, checkout creation and fulfilment validation all read it from here.
A package is bought once (``mode=payment``); a plan is a subscription that grants
``tokens_per_period`` tokens for each paid invoice (``mode=subscription``).
"""
from __future__ import annotations

from dataclasses import dataclass

PLAN_INTERVALS = ("day", "week", "month", "year")


@dataclass(frozen=True)
class Package:
    id: str
    name: str
    tokens: int
    price_cents: int
    currency: str


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    tokens_per_period: int
    price_cents: int
    interval: str  # Stripe's recurring interval: day | week | month | year
    currency: str
    rollover_cap: int | None = None  # unused allowance kept past a period's end (None: all of it)


@dataclass(frozen=True)
class Catalog:
    packages: tuple[Package, ...]
    plans: tuple[Plan, ...] = ()

    def get(self, package_id: object) -> Package | None:
        if not isinstance(package_id, str):
            return None
        for package in self.packages:
            if package.id == package_id:
                return package
        return None

    def plan(self, plan_id: object) -> Plan | None:
        if not isinstance(plan_id, str):
            return None
        for plan in self.plans:
            if plan.id == plan_id:
                return plan
        return None


def _positive_int(value: object) -> bool:
    return type(value) is int and value > 0


def parse_catalog(raw: dict) -> Catalog:
    """The catalog from its JSON form; anything inconsistent raises ValueError."""
    currency = raw["currency"].lower()
    packages = []
    for item in raw["packages"]:
        tokens, price = item["tokens"], item["priceCents"]
        if not (_positive_int(tokens) and _positive_int(price)):
            raise ValueError(f"catalog package {item.get('id')!r} needs positive integer tokens and priceCents")
        packages.append(Package(item["id"], item["name"], tokens, price, item.get("currency", currency).lower()))
    if len({p.id for p in packages}) != len(packages):
        raise ValueError("catalog package ids must be unique")
    plans = []
    for item in raw.get("plans", []):
        plan_id, tokens, price, interval = item.get("id"), item.get("tokensPerPeriod"), item.get("priceCents"), \
            item.get("interval")
        if not isinstance(plan_id, str) or not plan_id:
            raise ValueError(f"catalog plan id {plan_id!r} must be a non-empty string")
        if not (_positive_int(tokens) and _positive_int(price)):
            raise ValueError(f"catalog plan {plan_id!r} needs positive integer tokensPerPeriod and priceCents")
        if interval not in PLAN_INTERVALS:
            raise ValueError(f"catalog plan {plan_id!r} interval must be one of {', '.join(PLAN_INTERVALS)}")
        cap = item.get("rolloverCap")
        if cap is not None and (type(cap) is not int or cap < 0):
            raise ValueError(f"catalog plan {plan_id!r} rolloverCap must be a whole number of tokens, 0 or more")
        plans.append(Plan(plan_id, item["name"], tokens, price, interval, item.get("currency", currency).lower(), cap))
    if len({p.id for p in plans}) != len(plans):
        raise ValueError("catalog plan ids must be unique")
    return Catalog(tuple(packages), tuple(plans))
