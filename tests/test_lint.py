"""The configured linters stay clean (pyproject.toml: [tool.ruff], [tool.mypy]): ruff's lint
and its formatter on the package, tests and benches; mypy on the package's type hints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    path = str(exe) if exe.exists() else shutil.which(name)
    if not path:
        missing(name, "install the test extra: pip install -e '.[test]'")
    return str(path)


def test_ruff_is_clean():
    r = subprocess.run(
        [_tool("ruff"), "check", "rtcc_geo", "tests", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]


def test_ruff_format_is_clean():
    """Run ``ruff format rtcc_geo tests bench`` before committing when this fails."""
    r = subprocess.run(
        [_tool("ruff"), "format", "--check", "rtcc_geo", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]


def test_mypy_is_clean():
    r = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
