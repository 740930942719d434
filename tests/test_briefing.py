"""The printable briefing, as a user gets it: `rtcc-geo briefing` run as a process on two
years of real Philadelphia incidents, its PDF rendered with poppler (pdftoppm /
pdftotext / pdfimages), pages, text, maps and streets checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def poppler():
    tools = {t: shutil.which(t) for t in ("pdftoppm", "pdftotext", "pdfimages")}
    if not all(tools.values()):
        missing("poppler-utils (pdftoppm, pdftotext, pdfimages)", "apt-get install -y poppler-utils")
    return tools


@pytest.fixture(scope="module")
def phl_store(shared_data):
    from rtcc_geo.datasets import example_store

    return example_store("philadelphia", years=(2023, 2024))


@pytest.fixture(scope="module")
def brief(phl_store, poppler, tmp_path_factory):
    out = tmp_path_factory.mktemp("brief") / "briefing.pdf"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtcc_geo.cli.main",
            "briefing",
            "--store",
            str(phl_store.root),
            "--end",
            "2024-06-30",
            "--district",
            "24",
            "--units",
            "3",
            "--model",
            "naive",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    text = subprocess.run(
        [poppler["pdftotext"], "-layout", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = text.split("\f")
    return out, summary, pages


def test_pages_and_sections(brief):
    out, summary, pages = brief
    assert summary["pages"] == 4 and summary["out"] == str(out)
    body = [p for p in pages if p.strip()]
    assert len(body) == 4  # pdftotext agrees on the page count
    assert summary["sections"] == [
        "CompStat",
        "Hot-spot map",
        "What changed",
        "Top places by block address",
        "Next shift: forecast and patrol plan",
        "Caveats",
    ]
    for p in body:  # every page says what it is about
        assert "district 24 - through 2024-06-30" in p


def test_compstat_table_in_the_pdf(brief, phl_store):
    from rtcc_geo.compstat import compstat
    from rtcc_geo.store.base import Query

    _, _, pages = brief
    cs = compstat(phl_store, Query(source="philadelphia", districts=("24",)), end="2024-06-30")
    r = cs.rows[(cs.rows["district"] == "24")].set_index(["category", "period"])
    lines = {ln.split()[0]: ln.split() for ln in pages[0].splitlines() if ln.split()}
    for cat in ("all", "violent", "theft", "drugs"):
        words = lines[cat]
        nums = [w for w in words[1:] if w != "*"]
        # count and year-before count of each period, in the order week, 28 days, YTD
        want = [f"{r.loc[(cat, p), c]:,}" for p in ("week", "28d", "ytd") for c in ("count", "prior_year")]
        assert [nums[0], nums[1], nums[3], nums[4], nums[6], nums[7]] == want, words
    assert "Week 2024-06-24 to 2024-06-30" in pages[0] and "Year to" in pages[0]


def test_maps_are_images_with_streets(brief, poppler, tmp_path):
    """Both maps are raster images (pdfimages), and the rendered pages show streets: many
    thin light-grey lines (the street colour) inside the map frame."""
    out, _, pages = brief
    lst = subprocess.run(
        [poppler["pdfimages"], "-list", str(out)], capture_output=True, text=True, check=True
    ).stdout.splitlines()[2:]
    img_pages = sorted({int(x.split()[0]) for x in lst})
    assert img_pages == [2, 3]
    assert "Hot-spot map" in pages[1] and "What changed" in pages[2]
    from PIL import Image

    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run([poppler["pdftoppm"], "-r", "70", "-png", str(out), str(ARTIFACTS / "briefing")], check=True)
    for n in (2, 3):
        png = ARTIFACTS / f"briefing-{n}.png"
        a = np.asarray(Image.open(png).convert("L"), dtype=np.int16)
        street = (np.abs(a - 184) <= 18).mean()  # matplotlib grey 0.72 = 184, anti-aliased
        assert street > 0.003, (png, street)  # the same page drawn without streets: ~0.001
        # black and white by design: grey levels only (R = G = B), nothing lost in print
        rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
        assert (np.ptp(rgb, axis=2) <= 8).mean() > 0.999


def test_streets_come_from_the_agency_file(shared_data):
    """The street layer is the agency's centreline file, found like its boundary; without
    it the same map has a fraction of the street grey."""
    import io

    from PIL import Image

    from rtcc_geo import briefing as b

    area = b._area("philadelphia", "24")
    streets = b._streets("philadelphia", area.bounds)
    assert streets is not None and len(streets) > 1000  # segments inside district 24's box
    cells = pd.DataFrame({"cell": pd.Series(dtype="int64"), "cls": pd.Series(dtype="int64")})
    share = []
    for st in (streets, None):
        png = b._map_png(cells, b.HOT_CLASSES, area, st, b._districts("philadelphia"), "t", "n")
        a = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
        share.append((np.abs(a - 184) <= 18).mean())
    assert share[0] > 4 * share[1], share


def test_places_plan_and_caveats(brief, phl_store):
    from rtcc_geo.places import top_places
    from rtcc_geo.store.base import Query

    _, _, pages = brief
    p4 = pages[3]
    tp = top_places(
        phl_store, Query(source="philadelphia", districts=("24",), start="2024-06-03", end="2024-07-01"), n=3
    )
    assert len(tp) == 3
    for b in tp["block"]:
        assert b in p4
    # the ranked what-changed list names places, not cell ids
    assert "BLOCK" in pages[2] and "8" * 3 not in pages[2].split("What changed")[0]
    # the patrol plan: 3 units, each with its reasons
    assert "Next shift: forecast and patrol plan" in p4 and "Mon 01 Jul 2024 07:00" in p4
    plan_lines = [ln for ln in p4.splitlines() if "expected incidents this shift" in ln]
    assert len(plan_lines) == 3
    assert "Caveats" in p4 and "no known time of day" in p4 and "quarantined" in p4
    assert "not geolocated" in p4
