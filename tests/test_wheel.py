"""The package as a user installs it: a built wheel in a fresh virtual environment outside the
checkout, with nothing from the repository on the path.

It proves the wheel carries its migrations, agency presets, taxonomies, staffing files and app
assets (package data), and that ``pip install`` of the wheel alone brings everything ``serve``
needs: the demo builds, ``db migrate`` applies the shipped SQL, an ingest of a real extract loads,
and ``serve`` answers its log-in page.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    )
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict, Path]:
    """(bin dir of a fresh venv holding only the wheel and its dependencies, env, work dir)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        import wheel  # noqa: F401 - pip needs it to build without isolation
    except ImportError:
        missing("the 'wheel' package", "install the test extra: pip install -e '.[test]'")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(tmp / "dist"),
        ],
        cwd=tmp,
        env=env,
    )
    (whl,) = (tmp / "dist").glob("rtcc_geo-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp, env=env)
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(whl)],
        cwd=tmp,
        env=env,
    )
    work = tmp / "work"
    work.mkdir()
    return venv / "bin", env, work


def test_wheel_ships_package_data(installed):
    bindir, env, work = installed
    code = (
        "import rtcc_geo, rtcc_geo.config as c, rtcc_geo.store.migrate as m, pathlib;"
        "import rtcc_geo.app as a;"
        "print(rtcc_geo.__file__);"
        "print(sorted(p.name for p in (c.DATA_DIR / 'agencies').glob('*.toml')));"
        "print(sorted(p.name for p in m.SQL_DIR.glob('*.sql'))[:1]);"
        "print(sorted(p.name for p in (pathlib.Path(a.__file__).parent / 'assets').glob('*.js')))"
    )
    out = _run([str(bindir / "python"), "-c", code], cwd=work, env=env).stdout.splitlines()
    assert "site-packages" in out[0] and str(ROOT) not in out[0], out[0]
    assert "philadelphia.toml" in out[1]
    assert out[2].startswith("['001_")
    assert "hexmap.js" in out[3]
    # Nothing of the checkout is importable from the venv: a top-level 'app' package is gone.
    r = subprocess.run([str(bindir / "python"), "-c", "import app"], cwd=work, env=env, capture_output=True)
    assert r.returncode != 0


def test_wheel_demo_migrate_ingest_serve(installed, pg_url, shared_data):
    bindir, env, work = installed
    cli = str(bindir / "rtcc-geo")
    env = {**env, "RTCC_SHARED_DATA": str(shared_data), "RTCC_NO_PROGRESS": "1"}
    demo = json.loads(
        _run(
            [cli, "demo", "--no-serve", "--store", "demo", "--start", "2024-10-01", "--end", "2024-11-01", "--json"],
            cwd=work,
            env=env,
        ).stdout
    )
    assert demo["loaded"] > 0
    _run([cli, "db", "migrate", "--db", pg_url], cwd=work, env=env)
    status = json.loads(_run([cli, "db", "status", "--db", pg_url, "--json"], cwd=work, env=env).stdout)
    assert status["migrations"] and {m["state"] for m in status["migrations"]} == {"applied"}
    phl = sorted((shared_data / "philadelphia").glob("incidents_2024_*.csv"))[:1]
    ing = json.loads(
        _run(
            [cli, "ingest", "--format", "philadelphia", *map(str, phl), "--store", "phl", "--json"], cwd=work, env=env
        ).stdout
    )
    assert ing["loaded"] > 1000
    assert ing["loaded"] + ing["quarantined"] + ing.get("duplicates", 0) == ing["read"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen(
        [cli, "serve", "--store", "demo", "--port", str(port), "--no-live"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                if srv.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"serve from the wheel did not answer:\n{srv.stdout.read()[-3000:]}") from None
                time.sleep(0.5)
        assert "password" in body.lower()
    finally:
        srv.terminate()
        srv.wait(timeout=20)
