"""Reads the catalog file (``core/catalog.json`` unless configured) into the domain's Catalog."""
from __future__ import annotations

import json
from pathlib import Path

from core.domain.catalog import Catalog, parse_catalog

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parents[1] / "catalog.json"


def load_catalog(path: str | Path | None = None) -> Catalog:
    return parse_catalog(json.loads(Path(path or DEFAULT_CATALOG_PATH).read_text()))
