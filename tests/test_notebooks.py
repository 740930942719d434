"""The analyst notebooks (notebooks/*.ipynb) run top to bottom on the real data.

Each notebook is executed with nbclient in a kernel started from *this*
interpreter (``sys.executable``, i.e. the project's venv), with the working
directory set to ``notebooks/``. A failing cell fails the test; so does a
notebook that takes 180 s or more. The example stores the notebooks read
(``rtcc_geo.datasets.example_store``) are built once per machine and cached;
the session fixture builds them *before* any notebook is timed, so a cold
cache is not charged to the first notebook (the build time is printed).

A static check makes sure no notebook imports or touches a private name of
the library (``rtcc_geo.x._y``, ``from rtcc_geo... import _y``, ``obj._y(``).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
#: Acceptance: every notebook finishes in under 3 minutes.
MAX_SECONDS = 180.0
#: Per-cell timeout (s): a hung cell fails the test instead of hanging the suite.
CELL_TIMEOUT = 170
#: Example stores the notebooks open (city, years); built before timing.
EXAMPLE_STORES = (("philadelphia", (2023, 2024)), ("vancouver", (2023, 2024)))
#: Notebooks run a second time on another agency, only their ``parameters`` cell changed.
#: All four run on Vancouver (measured: 02 32 s, 03 56 s, 04 64 s, 05 27 s on 2 busy cores);
#: the suite runs the two cheapest to keep its time down (add the others' stems to run them).
OTHER_AGENCY = {
    "02_hotspots": 'SOURCE = "vancouver"\nYEARS = (2023, 2024)\nSTART, END = "2024-01-01", "2025-01-01"\n'
    'CATEGORY = "burglary"\n',
    "03_time": 'SOURCE = "vancouver"\nYEARS = (2023, 2024)\n',
    "04_forecasting": 'SOURCE = "vancouver"\nYEARS = (2023, 2024)\nDATA_END = "2024-12-30"\n'
    'BACKTEST_FROM = "2024-09-30"\nSHIFT_START = "2024-12-07 16:00"\n',
    "05_staffing": 'SOURCE = "vancouver"\nYEARS = (2023, 2024)\nSTART, END = "2024-01-01", "2025-01-01"\n',
}
OTHER_AGENCY_RUN = ("02_hotspots", "05_staffing")
KERNEL_NAME = "rtcc-geo-test"


def test_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) == 5, names
    assert (NB_DIR / "README.md").is_file()
    readme = (NB_DIR / "README.md").read_text()
    for n in names:
        assert n in readme, f"{n} is not listed in notebooks/README.md"


# --------------------------------------------------------------------------
# static checks
# --------------------------------------------------------------------------
def _code(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _python_only(src: str) -> str:
    """Cell source without IPython magics/shell lines, so ``ast`` can parse it."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines())


def private_uses(src: str) -> list[str]:
    """Private names of the library a cell reaches into (empty when clean).

    Flags ``import rtcc_geo.a._b``, ``from rtcc_geo.a import _b``,
    ``from rtcc_geo._a import b``, and any attribute ``x._name`` (e.g.
    ``store._root``, ``mod._helper(``); dunders (``__version__``) are allowed.
    """
    bad: list[str] = []
    tree = ast.parse(_python_only(src))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("rtcc_geo") and any(p.startswith("_") for p in a.name.split(".")):
                    bad.append(f"import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod.startswith("rtcc_geo"):
                if any(p.startswith("_") for p in mod.split(".")):
                    bad.append(f"from {mod} import ...")
                bad += [f"from {mod} import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") and not (node.attr.startswith("__") and node.attr.endswith("__")):
                bad.append(f".{node.attr}")
    # belt and braces for anything ast cannot see (strings passed to getattr / importlib)
    bad += re.findall(r"rtcc_geo(?:\.\w+)*\._\w+", src)
    bad += [f"getattr(..., {m!r})" for m in re.findall(r"getattr\([^,]+,\s*['\"](_[^'\"]+)['\"]", src)]
    return bad


def test_private_name_check_catches_violations():
    """The static check itself must be able to fail."""
    assert private_uses("from rtcc_geo.hotspots.api import _resolve_boundary")
    assert private_uses("import rtcc_geo.hotspots._x")
    assert private_uses("from rtcc_geo.temporal.signatures import source_tz as s\ns._tz")
    assert private_uses("store._root")
    assert private_uses("m = rtcc_geo.forecast.base.ForecastModel()\nm._fit(c, 3)")
    assert private_uses("x = getattr(store, '_root')")
    assert not private_uses("%matplotlib inline\nfrom rtcc_geo.store import Query\nprint(x.__class__)")


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_uses_public_api_only(nb_path: Path):
    found = {i: private_uses(src) for i, src in enumerate(_code(nb_path))}
    found = {i: v for i, v in found.items() if v}
    assert not found, f"{nb_path.name}: code cells reach into private names: {found}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_stored_without_outputs(nb_path: Path):
    nb = json.loads(nb_path.read_text())
    with_out = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not with_out, f"{nb_path.name}: cells {with_out} are stored with outputs; clear them before committing"


# --------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def example_stores(shared_data):
    """Build (or reuse) the cached example stores before any notebook is timed."""
    from rtcc_geo.datasets import example_store

    for city, years in EXAMPLE_STORES:
        t0 = time.perf_counter()
        example_store(city, years)
        print(f"\nexample_store({city!r}, {years}): ready in {time.perf_counter() - t0:.1f} s")
    return shared_data


@pytest.fixture(scope="session")
def kernel_spec_dir(tmp_path_factory) -> Path:
    """A kernelspec whose kernel is this interpreter (the project venv),
    whatever ``python3`` kernels are installed elsewhere."""
    d = tmp_path_factory.mktemp("kernels") / KERNEL_NAME
    d.mkdir()
    (d / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "rtcc-geo test kernel",
                "language": "python",
            }
        )
    )
    return d.parent


def _parameters_cell(nb) -> int:
    cells = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "a notebook takes its agency from exactly one cell tagged 'parameters'"
    return cells[0]


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb_path: Path, example_stores, kernel_spec_dir, monkeypatch):
    _run_notebook(nb_path, kernel_spec_dir, monkeypatch, example_stores)


@pytest.mark.parametrize("stem", OTHER_AGENCY_RUN)
def test_notebook_runs_on_another_agency(stem: str, example_stores, kernel_spec_dir, monkeypatch):
    """The same notebook, unchanged but for its parameters cell, on Vancouver's data."""
    assert set(OTHER_AGENCY) == {p.stem for p in NOTEBOOKS} - {"01_getting_started"}
    _run_notebook(NB_DIR / f"{stem}.ipynb", kernel_spec_dir, monkeypatch, example_stores, OTHER_AGENCY[stem])


def _run_notebook(nb_path: Path, kernel_spec_dir, monkeypatch, example_stores, parameters: str | None = None):
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "Agg")  # no display; the inline backend still makes PNGs
    monkeypatch.setenv("RTCC_SHARED_DATA", str(example_stores))
    nb = nbformat.read(nb_path, as_version=4)
    if parameters is not None:
        nb.cells[_parameters_cell(nb)].source = parameters
    km = KernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_spec_dir)])
    )
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NB_DIR)}},
        allow_errors=False,
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and traceback) on the first failing cell
    seconds = time.perf_counter() - t0
    print(f"\n{nb_path.name}: {seconds:.1f} s")
    # the kernel really was this interpreter
    assert km.kernel_spec.argv[0] == sys.executable
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # static figures (PNG, what GitHub's viewer shows) were really produced
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    assert pngs >= 2, f"{nb_path.name}: only {pngs} PNG figure(s) in the outputs"
    assert seconds < MAX_SECONDS, f"{nb_path.name} took {seconds:.0f} s (limit {MAX_SECONDS:.0f} s)"
