"""Architecture rules, checked on the source.

- the import contracts in pyproject.toml ``[tool.importlinter]``, run by ``lint-imports`` from
  this venv: web, worker and admin are independent; broker imports none of them; core imports no
  entry point, Flask or Celery; no deployed package imports the development tools;
- no module of a deployed package is longer than MAX_LINES.

``lint-imports`` parses the source (no imports run, no sockets opened) in a subprocess.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = ("core", "web", "worker", "broker", "admin")
MAX_LINES = 300  # the house aim is ~250


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), f"{lint_imports}: install import-linter in this venv"
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"lint-imports exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def test_no_module_of_a_deployed_package_is_over_the_line_limit():
    lengths = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
               for package in DEPLOYED for path in sorted((ROOT / package).rglob("*.py"))}
    assert len(lengths) > 20, "no source found"
    over = {path: n for path, n in sorted(lengths.items()) if n > MAX_LINES}
    assert over == {}, f"modules over {MAX_LINES} lines (aim for ~250): " + ", ".join(
        f"{path} ({n})" for path, n in over.items())
