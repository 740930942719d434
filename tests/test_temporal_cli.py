"""``rtcc-geo temporal | emerging | nearrepeat`` end to end on an embedded store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtcc_geo import synth
from rtcc_geo.cli.main import main
from rtcc_geo.store.embedded import EmbeddedStore
from rtcc_geo.temporal.cube import load_cube
from rtcc_geo.temporal.emerging import CATEGORIES


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_store")
    city = synth.generate(synth.SyntheticCity(seed=5, start="2024-01-01", end="2024-05-27", daily_rate=90))
    s = EmbeddedStore(d)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    s.write_incidents(city)
    return str(d), city


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_temporal_json(store_dir, capsys):
    d, city = store_dir
    out = _json(capsys, ["temporal", "--store", d, "--by", "category", "--json"])
    assert out["tz"] == synth.TIMEZONE and out["n_incidents"] == len(city)
    assert out["n_time_unknown"] == int((~city["time_known"]).sum())
    how = np.array([g["hour_of_week"] for g in out["groups"].values()]).sum(axis=0)
    assert len(how) == 168
    # Aoristic hour-of-week totals: every time-known incident exactly once.
    assert how.sum() == pytest.approx(int(city["time_known"].sum()), abs=0.01)
    dow = np.array([g["dow"] for g in out["groups"].values()]).sum()
    assert dow == pytest.approx(len(city), abs=0.01)


def test_temporal_text_and_hotspot_profile(store_dir, capsys):
    d, _ = store_dir
    assert main(["temporal", "--store", d, "--category", "burglary", "--hotspot-profile"]) == 0
    text = capsys.readouterr().out
    assert "incidents (America/New_York)" in text and "peak hour of week" in text


def test_emerging_json_saves_cube_and_table(store_dir, capsys, tmp_path):
    d, city = store_dir
    gj = tmp_path / "ehsa.geojson"
    out = _json(
        capsys,
        [
            "emerging",
            "--store",
            d,
            "--from",
            "2024-01-01",
            "--to",
            "2024-05-27",
            "--step",
            "week",
            "--study-area",
            "data",
            "--save-cube",
            "cli_cube",
            "--save",
            "cli_ehsa",
            "--geojson",
            str(gj),
            "--json",
        ],
    )
    assert out["steps"] == 21 and set(out["categories"]) == set(CATEGORIES)
    assert sum(out["categories"].values()) == out["cells"]
    assert out["incidents"] == len(city)
    s = EmbeddedStore(d)
    assert load_cube(s, "cli_cube").values.sum() == len(city)
    assert len(s.get_table("cli_ehsa")) == out["cells"]
    import geopandas as gpd

    assert len(gpd.read_file(gj)) == out["cells"]
    # Re-run on the saved cube gives the same table.
    again = _json(capsys, ["emerging", "--store", d, "--cube", "cli_cube", "--json"])
    assert again["categories"] == out["categories"]


def test_nearrepeat_json_and_errors(store_dir, capsys):
    d, _ = store_dir
    out = _json(
        capsys,
        [
            "nearrepeat",
            "--store",
            d,
            "--category",
            "burglary",
            "--permutations",
            "19",
            "--space",
            "0",
            "100",
            "200",
            "--time",
            "0",
            "7",
            "--json",
        ],
    )
    assert out["space_bands"] == ["[0, 100) m", "[100, 200) m", ">= 200 m"]
    assert out["time_bands"] == ["[0, 7) d", ">= 7 d"]
    assert len(out["bands"]) == 6
    obs = sum(b["observed"] for b in out["bands"])
    assert obs == out["n_events"] * (out["n_events"] - 1) // 2
    assert main(["nearrepeat", "--store", d, "--space", "50", "100", "--permutations", "9"]) == 2
    assert "start at 0" in capsys.readouterr().err
    assert main(["nearrepeat", "--store", d, "--offense", "No Such Offense"]) == 2
    assert "offense text" in capsys.readouterr().err
    assert main(["emerging", "--store", d, "--cube", "missing_cube"]) == 2
    assert "no space-time cube" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["temporal", "emerging", "nearrepeat"])
def test_help_explains_itself(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--json" in text
