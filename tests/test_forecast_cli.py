"""``rtcc-geo forecast`` and ``rtcc-geo deploy`` end to end on a real store."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest

from rtcc_geo.cli.main import main

FILES = ("incidents_2024_05.csv", "incidents_2024_06.csv", "incidents_2024_07.csv")


@pytest.fixture(scope="module")
def store_dir(shared_data, tmp_path_factory):
    from rtcc_geo.ingest import ingest_files
    from rtcc_geo.store import open_store

    d = tmp_path_factory.mktemp("fc_cli_store")
    ingest_files("philadelphia", [shared_data / "philadelphia" / f for f in FILES], open_store(store_dir=d))
    return str(d)


def test_backtest_json(store_dir, capsys):
    rc = main(
        [
            "forecast",
            "backtest",
            "--store",
            store_dir,
            "--model",
            "naive,stkde",
            "--category",
            "all",
            "--from",
            "2024-07-01",
            "--to",
            "2024-07-15",
            "--horizon",
            "7d",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["origins"] == 2 and set(out["models"]) == {"naive", "stkde"}
    for m in out["models"].values():
        assert {"hit_rate_1pct", "pai_1pct", "pei_1pct", "pai_5pct"} <= set(m)
        assert 0 < m["hit_rate_1pct"] < 1 and 0 < m["pei_1pct"] <= 1
        assert m["pai_1pct"] == pytest.approx(m["hit_rate_1pct"] / (248 / out["cells"]), rel=0.02)


def test_predict_writes_files(store_dir, tmp_path, capsys):
    csv = tmp_path / "fc.csv"
    rc = main(
        [
            "forecast",
            "predict",
            "--store",
            store_dir,
            "--model",
            "naive",
            "--at",
            "2024-07-20 16:00",
            "--horizon",
            "8h",
            "--out",
            str(csv),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    df = pd.read_csv(csv)
    assert len(df) == out["cells"] and df["expected"].is_monotonic_decreasing
    assert df["expected"].sum() == pytest.approx(out["expected_total"])


def test_deploy_cli(store_dir, tmp_path, capsys):
    csv, gj = tmp_path / "plan.csv", tmp_path / "plan.geojson"
    rc = main(
        [
            "deploy",
            "--store",
            store_dir,
            "--shift-start",
            "2024-07-20 16:00",
            "--units",
            "8",
            "--spacing-m",
            "500",
            "--model",
            "stkde",
            "--out-csv",
            str(csv),
            "--out-geojson",
            str(gj),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal" and len(out["areas"]) == 8
    plan = pd.read_csv(csv)
    assert len(plan) == out["cells"] and plan["reason"].str.len().gt(20).all()
    sched = pd.read_csv(tmp_path / "plan_schedule.csv")
    assert len(sched) == out["visits"] and sched["minutes"].between(12, 16).all()
    g = gpd.read_file(gj)
    assert len(g) == len(plan)
    # the plan for the next day rests nothing yet, but a 3-day history rests those cells
    hist = pd.concat([plan.assign(date=d) for d in ("2024-07-17", "2024-07-18", "2024-07-19")])
    hist.to_csv(tmp_path / "hist.csv", index=False)
    rc = main(
        [
            "deploy",
            "--store",
            store_dir,
            "--shift-start",
            "2024-07-20 16:00",
            "--units",
            "8",
            "--spacing-m",
            "500",
            "--model",
            "stkde",
            "--history",
            str(tmp_path / "hist.csv"),
            "--out-csv",
            str(tmp_path / "p2.csv"),
        ]
    )
    assert rc == 0
    p2 = pd.read_csv(tmp_path / "p2.csv")
    assert not set(p2["cell"]) & set(plan["cell"])
    assert "Patrol plan" in capsys.readouterr().out


def test_cli_errors(store_dir, capsys):
    assert (
        main(
            [
                "forecast",
                "backtest",
                "--store",
                store_dir,
                "--category",
                "nope",
                "--from",
                "2024-07-01",
                "--to",
                "2024-07-08",
            ]
        )
        == 2
    )
    assert "unknown --category" in capsys.readouterr().err
    assert (
        main(
            [
                "forecast",
                "backtest",
                "--store",
                store_dir,
                "--model",
                "magic",
                "--from",
                "2024-07-01",
                "--to",
                "2024-07-08",
            ]
        )
        == 2
    )
    assert "unknown model" in capsys.readouterr().err
    assert main(["deploy", "--store", store_dir, "--shift-start", "2024-07-20 16:00", "--district", "99"]) == 2
    assert "no district" in capsys.readouterr().err
