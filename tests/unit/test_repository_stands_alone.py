"""The repository stands alone: a fresh clone runs `make test`, `make dev` and `make bench` with
nothing beside it. The tools (tests/, bench/, devstack/, sandbox/), the Makefile and CI's script
read no path outside the repository: no ``../name`` that leaves it, no ``parents[N]`` or
``.parent`` chain of ``__file__`` above its root, no absolute ``/work/`` path, nothing of the
development machines' ``shared/reference``. What they need lives in the repository (Stripe's
fixtures: devstack/fixtures/). Relative imports (``from ..x import``) are not paths.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The examples below are built from pieces, so this file does not itself match the patterns it
# looks for (the stop hook greps for them too).
SHARED = "sha" + "red"
TOOLS = ("tests", "bench", "devstack", "sandbox")
SUFFIXES = {".py", ".sh", ".bash", ".toml", ".cfg", ".ini", ".json", ".yaml", ".yml"}
SKIP_DIRS = {"node_modules", "__pycache__", ".pytest_cache", ".hypothesis", "fixtures"}
EXTRA_FILES = ("Makefile", ".ci/run", "pyproject.toml")

# Spelled in pieces so that this file does not match itself.
SHARED_REFERENCE = re.compile(r"\bshared" + r"/reference\b|[\"']shared[\"']\s*/\s*[\"']reference[\"']")
ABSOLUTE_WORK = re.compile(r"(?<![\w.~-])/" + r"work/")
DOTDOT_SHARED = re.compile(r"\.\./+shared\b")
DOTDOT_PATH = re.compile(r"(?<![\w.])((?:\.\./)+)([A-Za-z0-9_$][\w.$-]*)?")
RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.+")
PARENTS_INDEX = re.compile(r"__file__\)?(?:\.resolve\(\))?(?:\.absolute\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)?(?:\.resolve\(\))?(?:\.absolute\(\))?((?:\.parent\b)+)")


def scanned_files() -> list[Path]:
    files = []
    for top in TOOLS:
        for path in sorted((ROOT / top).rglob("*")):
            relative = path.relative_to(ROOT)
            if path.is_file() and path.suffix in SUFFIXES and not SKIP_DIRS & set(relative.parts[:-1]) \
                    and path != Path(__file__).resolve():
                files.append(path)
    files += [ROOT / name for name in EXTRA_FILES if (ROOT / name).is_file()]
    return files


def escapes(path: Path, line: str) -> list[str]:
    """What on this line of this file names a path outside the repository (empty: nothing)."""
    problems = []
    if SHARED_REFERENCE.search(line):
        problems.append("reads the machines' shared/reference (copy what is needed into the repository)")
    if DOTDOT_SHARED.search(line):
        problems.append("reads the shared folder beside the repository (../)")
    if ABSOLUTE_WORK.search(line):
        problems.append("an absolute /work/ path")
    # A file `depth` directories below the root: parents[depth] of its __file__ is the root, and so
    # is .parent repeated depth + 1 times; ../ repeated depth times from its directory.
    depth = len(path.relative_to(ROOT).parts) - 1
    for match in PARENTS_INDEX.finditer(line):
        if int(match[1]) > depth:
            problems.append(f"parents[{match[1]}] of __file__ is above the repository root")
    for match in PARENT_CHAIN.finditer(line):
        if match[1].count(".parent") > depth + 1:
            problems.append(f"{match[1].count('.parent')} x .parent of __file__ is above the repository root")
    # ../name, resolved from the file's own directory: leaving the root is leaving the repository.
    if not RELATIVE_IMPORT.match(line):
        for match in DOTDOT_PATH.finditer(line):
            if match[1].count("../") > depth:
                problems.append(f"{match[0]!r} leaves the repository")
    return problems


def violations() -> list[str]:
    out = []
    for path in scanned_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for problem in escapes(path, line):
                out.append(f"{path.relative_to(ROOT)}:{number}: {problem}: {line.strip()[:120]}")
    return out


def test_the_tools_read_nothing_outside_the_repository():
    found = violations()
    assert not found, "paths outside the repository (a fresh clone has nothing beside it):\n" + "\n".join(found)


def test_the_scan_covers_the_tools():
    names = {str(path.relative_to(ROOT)) for path in scanned_files()}
    for expected in ("Makefile", "devstack/stripe_events.py", "tests/conftest.py", "devstack/processes.py",
                     "sandbox/package.json", "bench/run.py"):
        assert expected in names, f"{expected} is not scanned"
    assert not any("node_modules" in name for name in names)


@pytest.mark.parametrize("where, line", [
    ("tests/support/payments.py",
     'FIXTURES = Path(__file__).resolve().parents[3] / "' + SHARED + '" / "reference" / "stripe-openapi-fixtures3.json"'),
    ("tests/support/payments.py", 'FIXTURES = Path(__file__).resolve().parents[3] / "data.json"'),
    ("tests/support/payments.py", 'FIXTURES = Path(__file__).parent.parent.parent.parent / "data.json"'),
    ("tests/conftest.py", 'path = Path(__file__).resolve().parents[2] / "x"'),
    ("devstack/dev.py", 'open("../../' + SHARED + '/NOTES.md")'),
    ("Makefile", "\tcp ../" + SHARED + "/reference/x.json tests/"),
    ("Makefile", "\tcat ../other-repo/file"),
    ("bench/run.py", 'SPOOL = "/' + 'work/shared/x"'),
])
def test_the_scan_finds_escaping_paths(where, line):
    assert escapes(ROOT / where, line), line


@pytest.mark.parametrize("where, line", [
    ("devstack/stripe_events.py", 'FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x.json"'),
    ("tests/support/payments.py", 'ROOT = Path(__file__).parent.parent.parent'),
    ("tests/support/payments.py", 'open("../../README.md")'),
    ("tests/unit/test_x.py", 'ROOT = Path(__file__).resolve().parents[2]'),
    ("tests/sandbox_support.py", 'REPO = Path(__file__).resolve().parents[1]'),
    ("devstack/processes.py", 'ROOT = Path(__file__).resolve().parent.parent'),
    ("tests/unit/test_x.py", 'from ..support import events'),
    ("tests/integration/test_x.py", 'client.get("/purchase/success?session_id=../../etc")'),
    ("tests/unit/test_x.py", '{"userId": "../admin", "packageId": "starter"}'),
    (".ci/run", 'cd "$(dirname "$0")/.."'),
    ("tests/unit/test_x.py", '"shared-secrets", "stripe-key"'),
])
def test_the_scan_accepts_paths_inside_the_repository(where, line):
    assert not escapes(ROOT / where, line), escapes(ROOT / where, line)


def test_stripe_fixtures_are_in_the_repository():
    from devstack import stripe_events as events

    assert events.FIXTURES.is_relative_to(ROOT) and events.FIXTURES.is_file()
    assert events.FIXTURES == ROOT / "devstack" / "fixtures" / "stripe-openapi-fixtures3.json"
    assert "MIT" in (ROOT / "devstack" / "fixtures" / "README.md").read_text()
    resources = json.loads(events.FIXTURES.read_text())["resources"]
    assert {"checkout.session", "event", "charge", "refund", "dispute", "invoice", "subscription"} <= set(resources)
