"""`make lock`: regenerate requirements.lock and requirements-test.lock from a fresh virtualenv.

- requirements.lock: pyproject's [project] dependencies and everything they require (the images
  install exactly this, with --no-deps, then `pip check`);
- requirements-test.lock: what the [test] extras need beyond requirements.lock.

`make install` (and so `make test`, `make dev`, `make bench`) installs the project with both files as
pip constraints, so a machine set up today gets the versions tested when the locks were written, not
whatever was released since.

How: a temporary venv of this Python (3.11, the project's), the Makefile's pinned pip, setuptools and
wheel (its BOOTSTRAP), then one `pip install` of pyproject's dependencies and test extras as pyproject
states them: the transitive dependencies unpinned, so pip resolves them afresh (wheels only, as the
images install). The closures are then read from that venv's installed metadata and written, each
package pinned with ==. The temporary venv is removed afterwards.

    python3 devstack/lock.py [--output-dir DIR]

tests/unit/test_deploy_files.py checks the result against the project's own venv.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = "requirements.lock"
TEST_LOCK = "requirements-test.lock"

RUNTIME_HEADER = """\
# requirements.lock: every package `pip install .` needs (pyproject.toml [project] dependencies and
# everything they require, for CPython 3.11 on Linux), each pinned with ==. The images install it with
# `pip install --no-deps -r requirements.lock` followed by `pip check`, so a package missing here fails
# the image build instead of being resolved at build time. `make install` (and so make test, dev, bench)
# installs with it and requirements-test.lock as constraints (-c): every machine gets these versions.
# Regenerate both after changing pyproject.toml dependencies, or to take upstream releases: `make lock`
# (devstack/lock.py resolves pyproject afresh in a temporary venv and writes the pins).
# tests/unit/test_deploy_files.py checks that this file pins every pyproject dependency at its version
# and is closed under the installed packages' requirements.
"""

TEST_HEADER = """\
# requirements-test.lock: every package the [test] extras (pyproject.toml [project.optional-dependencies])
# need beyond requirements.lock, for CPython 3.11 on Linux, each pinned with ==. `make install` (and so
# make test, dev, bench) runs `pip install -c requirements.lock -c requirements-test.lock -e '.[test]'`,
# so every machine gets these versions whatever was released since. Never installed in the images.
# Regenerate both after changing pyproject.toml dependencies, or to take upstream releases: `make lock`
# (devstack/lock.py resolves pyproject afresh in a temporary venv and writes the pins).
# tests/unit/test_deploy_files.py checks that this file pins every test extra at its version and, with
# requirements.lock, is closed under the installed packages' requirements.
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> tuple[list[str], list[str]]:
    """pyproject's [project] dependencies and its [test] extras, as written."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]), list(project["optional-dependencies"]["test"])


def bootstrap() -> list[str]:
    """The Makefile's pinned pip, setuptools and wheel (its BOOTSTRAP variable): one place for them."""
    match = re.search(r"^BOOTSTRAP\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    if not match:
        sys.exit("Makefile: no BOOTSTRAP variable (the pinned pip, setuptools and wheel)")
    return match[1].split()


# --- run inside the temporary venv: the closures of what is installed there ----------------------

def closure(requirements: list[str]) -> dict[str, tuple[str, str]]:
    """canonical name -> (name, version) of the requirements and all they require, as installed."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement

    seen: dict[str, set[str]] = {}
    out: dict[str, tuple[str, str]] = {}
    queue = [Requirement(raw) for raw in requirements]
    queue = [req for req in queue if req.marker is None or req.marker.evaluate({"extra": ""})]
    while queue:
        req = queue.pop()
        name = canonical(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        extras |= seen.get(name, set())
        seen[name] = extras
        dist = metadata.distribution(req.name)
        out[name] = (dist.metadata["Name"], dist.version)
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""}):
                queue.append(sub)
    return out


def closures() -> dict[str, list[tuple[str, str]]]:
    runtime_reqs, test_reqs = pyproject()
    runtime = closure(runtime_reqs)
    test = {name: pin for name, pin in closure(test_reqs).items() if name not in runtime}
    return {"runtime": sorted(runtime.values()), "test": sorted(test.values())}


# --- run by `make lock` --------------------------------------------------------------------------

def render(header: str, pins: list[tuple[str, str]]) -> str:
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins, key=lambda p: p[0].lower()))


def read_pins(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def run(*argv: str | Path) -> None:
    print("+", " ".join(str(a) for a in argv), flush=True)
    subprocess.run([str(a) for a in argv], check=True)


def resolve() -> dict[str, list[tuple[str, str]]]:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"the locks are for CPython 3.11; this is {sys.version.split()[0]} (set PYTHON=python3.11)")
    runtime_reqs, test_reqs = pyproject()
    tmp = Path(tempfile.mkdtemp(prefix="tokenbank-lock-"))
    try:
        run(sys.executable, "-m", "venv", tmp / "venv")
        python = tmp / "venv" / "bin" / "python"
        run(python, "-m", "pip", "install", "-q", *bootstrap())
        run(python, "-m", "pip", "install", "-q", "--only-binary=:all:", *runtime_reqs, *test_reqs)
        run(python, "-m", "pip", "check")
        out = subprocess.run([str(python), __file__, "--closures"], check=True, capture_output=True, text=True)
        return {kind: [tuple(pin) for pin in pins] for kind, pins in json.loads(out.stdout).items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT, help="where to write the two lock files")
    parser.add_argument("--closures", action="store_true", help=argparse.SUPPRESS)  # inside the venv
    args = parser.parse_args(argv)
    if args.closures:
        json.dump(closures(), sys.stdout)
        return 0
    pins = resolve()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for filename, header, kind in ((RUNTIME_LOCK, RUNTIME_HEADER, "runtime"), (TEST_LOCK, TEST_HEADER, "test")):
        path = args.output_dir / filename
        old, new = read_pins(path), dict(pins[kind])
        path.write_text(render(header, pins[kind]))
        changes = [f"  {name}: {old.get(name, '-')} -> {new.get(name, '-')}"
                   for name in sorted(set(old) | set(new), key=str.lower) if old.get(name) != new.get(name)]
        print(f"wrote {path} ({len(new)} packages{'' if changes else ', unchanged'})")
        for change in changes:
            print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
