"""The printable shift briefing: one PDF a commander can read on paper.

Contents, in order: the CompStat table (week / 28 days / year to date), the
hot-spot map (Gi*, last 28 days), what changed (map and ranked list of rises
beyond chance), the top places by block address, the next shift's forecast
and patrol plan with reasons, and the data's caveats (unknown-time share,
not-geolocated incidents, quarantined rows).

The maps are drawn server-side with matplotlib from the same store and
analyses as the app (:func:`rtcc_geo.hotspots.hotspots`,
:func:`rtcc_geo.compstat.changes.what_changed`), on the agency's street
centrelines when it provides them (``streets_file`` in the agency config, by
default ``street_centerlines.geojson`` found like the boundary), with a scale
bar, a north arrow, the date range and a legend. Everything is grey levels and
hatching, so it reads the same in black and white. The PDF is written with
reportlab (pure Python, no browser).

>>> from rtcc_geo.briefing import briefing
>>> briefing(store, "philadelphia", end="2024-06-30", district="24", out="briefing.pdf")
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .compstat import compstat
from .compstat.api import count_text
from .compstat.changes import what_changed
from .compstat.periods import Span
from .places import top_places
from .store.base import Query, Store

#: Street file looked up when the agency config names none.
DEFAULT_STREETS_FILE = "street_centerlines.geojson"
#: Hot-spot classes: (Gi* bin, label, grey fill, hatch) - distinct in black and white.
HOT_CLASSES = [
    (3, "hot spot, 99 % confidence", "0.15", ""),
    (2, "hot spot, 95 %", "0.45", "////"),
    (1, "hot spot, 90 %", "0.75", ".."),
    (-1, "cold spot (any confidence)", "white", "oo"),
]


@dataclasses.dataclass
class Briefing:
    path: Path
    pages: int
    sections: list[str]
    seconds: float


def briefing(
    store: Store,
    source: str | None = None,
    end: str | dt.date | None = None,
    district: str | None = None,
    out: str | Path = "briefing.pdf",
    units: int = 4,
    shift_start: str | pd.Timestamp | None = None,
    shift_hours: float = 8.0,
    model: str = "ensemble",
    res: int | None = None,
) -> Briefing:
    """Write the briefing PDF for ``source`` through local day ``end`` (default
    yesterday), for one ``district`` or the whole agency. The next shift starts
    at ``shift_start`` (default 07:00 local the day after ``end``)."""
    import time

    t0 = time.perf_counter()
    q = Query(source=source, districts=(str(district),) if district else None)
    cs = compstat(store, q, end=end)
    source, tz, end_d = cs.source, cs.timezone, cs.end
    q = q.with_(source=source)
    res = res or (9 if district else 8)
    cur = Span(end_d - dt.timedelta(days=27), end_d)
    q28 = q.with_(start=pd.Timestamp(cur.start), end=pd.Timestamp(end_d + dt.timedelta(days=1)))
    date_range = f"{cur.start:%d %b %Y} - {cur.end:%d %b %Y} (local days, {tz})"
    area = _area(source, district)
    streets = _streets(source, area.bounds if area is not None else None)
    dists = _districts(source)

    hot = _hotspot_cells(store, q28, res)
    hot_png = _map_png(
        hot,
        HOT_CLASSES,
        area,
        streets,
        dists,
        f"Hot spots (Getis-Ord Gi*, H3 res {res}), {date_range}",
        "Gi* on counts per cell, k = 1 ring, 499 permutations, FDR-corrected bins",
    )
    ch = what_changed(store, q, end=end_d, res=res)
    ch_cells = ch.table[ch.table["unit"] == "cell"].reset_index(drop=True)
    ch_png = _changes_png(
        ch_cells,
        area,
        streets,
        dists,
        f"What changed: cells that rose beyond chance, {ch.current.start:%d %b} - "
        f"{ch.current.end:%d %b %Y} vs the {ch.baseline.days} days before",
    )
    places = top_places(store, q28, n=10)
    plan, plan_note = _plan(
        store, source, tz, end_d, shift_start, shift_hours, units, model, area if district else None
    )
    if plan is not None:  # name each patrol area by its most frequent block address
        q_year = q.with_(
            start=pd.Timestamp(end_d - dt.timedelta(days=364)),
            end=pd.Timestamp(end_d + dt.timedelta(days=1)),
            districts=None,
        )
        names = {}
        for a, part in plan.cells.groupby("centre"):
            tp = top_places(store, q_year, cells=part["cell"].tolist(), res=10, n=1)
            names[a] = tp["block"].iloc[0] if len(tp) else ""
        plan.cells["place"] = plan.cells["centre"].map(names)
    caveats = _caveats(store, q28, source)

    sections = _pdf(Path(out), cs, district, date_range, hot_png, ch, ch_png, places, plan, plan_note, caveats)
    return Briefing(Path(out), _page_count(Path(out)), sections, time.perf_counter() - t0)


# --- data -----------------------------------------------------------------------


def _agency(source: str):
    from .config import load_agency

    try:
        return load_agency(source)
    except FileNotFoundError:
        return None


def _area(source: str, district: str | None):
    from .hotspots.api import agency_boundary

    return agency_boundary(source, (district,) if district else None)


@lru_cache(maxsize=8)
def _streets_cached(path: str, bounds: tuple | None):
    import geopandas as gpd

    g = gpd.read_file(path, bbox=bounds) if bounds else gpd.read_file(path)
    return g.to_crs("EPSG:4326").geometry


def _streets(source: str, bounds) -> object | None:
    ag = _agency(source)
    if ag is None:
        return None
    name = ag.extra.get("streets_file", DEFAULT_STREETS_FILE)
    path = ag.find_file(name)
    if path is None:
        return None
    return _streets_cached(str(path), tuple(round(b, 4) for b in bounds) if bounds is not None else None)


def _districts(source: str):
    """District polygons with a ``label`` column, or None."""
    import geopandas as gpd

    ag = _agency(source)
    if ag is None or not ag.districts_file or not ag.districts_field:
        return None
    path = ag.find_file(ag.districts_file)
    if path is None:
        return None
    g = gpd.read_file(path).to_crs("EPSG:4326")
    g["label"] = g[ag.districts_field].astype(str)
    return g


def _hotspot_cells(store: Store, q: Query, res: int) -> pd.DataFrame:
    from .hotspots import hotspots

    gdf = hotspots(store, "gistar", res, q, permutations=499, seed=0)
    b = gdf["bin"].to_numpy()
    cls = np.where(b < 0, -1, b)
    return pd.DataFrame({"cell": gdf["cell"].to_numpy(np.int64), "cls": cls})


def _plan(store, source, tz, end_d, shift_start, shift_hours, units, model, district_area):
    from . import grid
    from .deploy import plan_from_store

    t0 = (
        pd.Timestamp(shift_start)
        if shift_start is not None
        else pd.Timestamp(end_d + dt.timedelta(days=1)) + pd.Timedelta(hours=7)
    )
    if t0.tzinfo is None:
        t0 = t0.tz_localize(tz)
    kw = {}
    note = "whole agency"
    if district_area is not None:
        kw["eligible"] = grid.cover(district_area, 10)
        note = "inside the selected district"
    try:
        return plan_from_store(store, source, t0, shift_hours, units=units, model=model, **kw), note
    except ValueError as e:  # e.g. no history: say so in the briefing rather than fail it
        return None, f"no plan: {e}"


def _caveats(store: Store, q: Query, source: str) -> list[str]:
    total = store.count(q)
    known = int(store.counts(9, ("hour",), q)["n"].sum())
    ungeo = store.count(q.with_(geolocated=False))
    quarantined = len(store.quarantine(source))
    return [
        (
            f"{total:,} incidents in the last 28 days; {total - known:,} ({(total - known) / max(total, 1):.1%}) "
            "have no known time of day (date only): counted by day, left out of hour figures."
        ),
        (
            f"{ungeo:,} ({ungeo / max(total, 1):.1%}) have no usable location (not geolocated): counted in the "
            "table, not on the maps, hot spots, forecast or plan."
        ),
        (
            f"{quarantined:,} rows of {source}'s files were quarantined as unusable (no key, no time, "
            "no location and no district, or duplicates) and are in no figure."
        ),
        (
            "Counts are of incidents as the agency publishes them (dispatch time, block-level location); "
            "recent days may still be revised by the agency."
        ),
    ]


# --- maps -----------------------------------------------------------------------


def _frame(area, cells: np.ndarray):
    """Local metres projection centred on the area (north up, true scale) and the extent."""
    from . import grid

    if area is not None:
        x0, y0, x1, y1 = area.bounds
    else:
        lat, lon = grid.cell_centres(cells)
        x0, y0, x1, y1 = lon.min(), lat.min(), lon.max(), lat.max()
    tr = grid.local_transformer((x0 + x1) / 2, (y0 + y1) / 2)
    return tr, (x0, y0, x1, y1)


def _new_axes(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 6.6), dpi=150)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8.5, loc="left")
    return fig, ax


def _base(ax, tr, bounds, area, streets, dists):
    from matplotlib.collections import LineCollection

    x0, y0, x1, y1 = bounds
    (mx0, mx1), (my0, my1) = tr.transform([x0, x1], [y0, y1])
    pad = 0.03 * max(mx1 - mx0, my1 - my0)
    ax.set_xlim(mx0 - pad, mx1 + pad)
    ax.set_ylim(my0 - pad, my1 + pad)
    if streets is not None and len(streets):
        segs = []
        for g in streets:
            parts = getattr(g, "geoms", [g])
            for p in parts:
                xy = np.asarray(p.coords)
                if len(xy) > 1:
                    x, y = tr.transform(xy[:, 0], xy[:, 1])
                    segs.append(np.column_stack([x, y]))
        ax.add_collection(LineCollection(segs, colors="0.72", linewidths=0.35, zorder=1))
    if dists is not None:
        for _, r in dists.iterrows():
            for poly in getattr(r.geometry, "geoms", [r.geometry]):
                xy = np.asarray(poly.exterior.coords)
                x, y = tr.transform(xy[:, 0], xy[:, 1])
                ax.plot(x, y, color="black", linewidth=0.7, linestyle=(0, (4, 2)), zorder=4)
            c = r.geometry.representative_point()
            cx, cy = tr.transform(c.x, c.y)
            if mx0 - pad <= cx <= mx1 + pad and my0 - pad <= cy <= my1 + pad:
                ax.text(
                    cx,
                    cy,
                    r["label"],
                    fontsize=7,
                    ha="center",
                    va="center",
                    zorder=6,
                    weight="bold",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "0.4", "lw": 0.4},
                )
    if area is not None:
        for poly in getattr(area, "geoms", [area]):
            xy = np.asarray(poly.exterior.coords)
            x, y = tr.transform(xy[:, 0], xy[:, 1])
            ax.plot(x, y, color="black", linewidth=1.4, zorder=5)
    _scale_bar(ax)
    _north_arrow(ax)


def _scale_bar(ax) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    want = (x1 - x0) / 5
    length = max(v for v in (100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000) if v <= max(want, 100))
    bx, by = x0 + 0.04 * (x1 - x0), y0 + 0.04 * (y1 - y0)
    h = 0.012 * (y1 - y0)
    for i in range(2):  # two halves, black and white: readable on any printer
        ax.add_patch(
            __import__("matplotlib.patches", fromlist=["Rectangle"]).Rectangle(
                (bx + i * length / 2, by),
                length / 2,
                h,
                facecolor="black" if i == 0 else "white",
                edgecolor="black",
                linewidth=0.6,
                zorder=8,
            )
        )
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length} m"
    box = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"}  # legible over streets and hatching
    ax.text(bx, by + 1.6 * h, "0", fontsize=7, ha="center", zorder=9, bbox=box)
    ax.text(bx + length, by + 1.6 * h, label, fontsize=7, ha="center", zorder=9, bbox=box)


def _north_arrow(ax) -> None:
    ax.annotate(
        "N",
        xy=(0.95, 0.96),
        xytext=(0.95, 0.86),
        xycoords="axes fraction",
        ha="center",
        va="center",
        fontsize=9,
        weight="bold",
        zorder=9,
        arrowprops={"facecolor": "black", "width": 3, "headwidth": 9, "headlength": 8},
    )


def _hexes(ax, tr, cells, **kw):
    from matplotlib.collections import PolyCollection

    from . import grid

    polys = []
    for ring in grid.cell_boundaries(np.asarray(cells, dtype=np.int64)):
        xy = np.asarray(ring)
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        polys.append(np.column_stack([x, y]))
    ax.add_collection(PolyCollection(polys, **kw))
    return polys


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _map_png(cells: pd.DataFrame, classes, area, streets, dists, title: str, note: str) -> bytes:
    from matplotlib.patches import Patch

    tr, bounds = _frame(area, cells["cell"].to_numpy())
    fig, ax = _new_axes(title)
    _base(ax, tr, bounds, area, streets, dists)
    handles = []
    for value, label, fill, hatch in classes:
        sel = cells.loc[cells["cls"] == value, "cell"].to_numpy()
        n = len(sel)
        if n:
            _hexes(
                ax,
                tr,
                sel,
                facecolors=fill,
                edgecolors="black",
                linewidths=0.3,
                hatch=hatch or None,
                zorder=3,
                alpha=0.9,
            )
        handles.append(Patch(facecolor=fill, edgecolor="black", hatch=hatch or None, label=f"{label} ({n})"))
    handles.append(Patch(facecolor="white", edgecolor="0.72", label="streets / no significant pattern"))
    ax.legend(handles=handles, loc="lower right", fontsize=6.5, framealpha=0.95, title="Legend", title_fontsize=7)
    fig.text(0.01, 0.005, note, fontsize=6)
    return _png(fig)


def _changes_png(rises: pd.DataFrame, area, streets, dists, title: str) -> bytes:
    from matplotlib.patches import Patch

    from . import grid

    cells = rises["key"].astype(np.int64).to_numpy() if len(rises) else np.empty(0, np.int64)
    tr, bounds = _frame(area, cells if len(cells) else np.array([], np.int64))
    fig, ax = _new_axes(title)
    _base(ax, tr, bounds, area, streets, dists)
    if len(cells):
        _hexes(ax, tr, cells, facecolors="0.35", edgecolors="black", linewidths=0.8, hatch="xx", zorder=3)
        lat, lon = grid.cell_centres(cells)
        x, y = tr.transform(lon, lat)
        for i, (cx, cy) in enumerate(zip(x, y), start=1):  # ranks match the list
            ax.text(
                cx,
                cy,
                str(i),
                fontsize=7,
                ha="center",
                va="center",
                zorder=7,
                weight="bold",
                bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": "black", "lw": 0.6},
            )
    else:
        ax.text(
            0.5,
            0.5,
            "No cell rose beyond chance in this period.",
            transform=ax.transAxes,
            ha="center",
            fontsize=10,
            bbox={"fc": "white", "ec": "black"},
            zorder=10,
        )
    ax.legend(
        handles=[
            Patch(
                facecolor="0.35",
                edgecolor="black",
                hatch="xx",
                label=f"rose beyond chance ({len(cells)}); number = rank in the list",
            ),
            Patch(facecolor="white", edgecolor="0.72", label="streets / no significant rise"),
        ],
        loc="lower right",
        fontsize=6.5,
        framealpha=0.95,
        title="Legend",
        title_fontsize=7,
    )
    fig.text(0.01, 0.005, "One-sided exact conditional binomial test per cell, Benjamini-Hochberg FDR 5 %", fontsize=6)
    return _png(fig)


# --- the PDF ----------------------------------------------------------------------


def _pdf(path: Path, cs, district, date_range, hot_png, ch, ch_png, places, plan, plan_note, caveats) -> list[str]:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import inch
    from reportlab.platypus import (
        Image,
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    ss = getSampleStyleSheet()
    h1, h2, body, small = (
        ss["Title"],
        ss["Heading2"],
        ss["BodyText"],
        ss["BodyText"].clone("small", fontSize=8, leading=10),
    )
    who = f"district {district}" if district else "all districts"
    story, sections = [], []

    def section(title: str):
        sections.append(title)
        story.append(Paragraph(title, h2))

    grid_style = TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), "Helvetica", 7.5),
            ("FONT", (0, 0), (-1, 1), "Helvetica-Bold", 7.5),
            ("GRID", (0, 0), (-1, -1), 0.3, colors.black),
            ("BACKGROUND", (0, 0), (-1, 1), colors.Color(0.88, 0.88, 0.88)),
            ("ALIGN", (1, 2), (-1, -1), "RIGHT"),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]
    )

    story.append(Paragraph(f"Shift briefing: {cs.source.title()}, {who}", h1))
    story.append(
        Paragraph(
            f"Data through {cs.end:%A %d %B %Y} (local days, {cs.timezone}). "
            f"Prepared {pd.Timestamp.now(tz=cs.timezone):%d %b %Y %H:%M %Z}.",
            body,
        )
    )
    section("CompStat")
    sp = cs.spans()
    story.append(
        Paragraph(
            "; ".join(
                f"<b>{lab}</b> {sp[p]['current']['start']} to {sp[p]['current']['end']} "
                f"(vs {sp[p]['prior_year']['start']} to {sp[p]['prior_year']['end']})"
                for p, lab in (("week", "Week"), ("28d", "28 days"), ("ytd", "Year to date"))
            ),
            small,
        )
    )
    dkey = str(district) if district else "all"
    rows = cs.rows[cs.rows["district"] == dkey]
    head = [
        ["Category", "Week", "", "", "28 days", "", "", "Year to date", "", ""],
        ["", "count", "yr before", "change", "count", "yr before", "change", "count", "yr before", "change"],
    ]
    body_rows = []
    for cat in rows["category"].drop_duplicates():
        line = [cat]
        for p in ("week", "28d", "ytd"):
            r = rows[(rows["category"] == cat) & (rows["period"] == p)].iloc[0]
            pct = "n/a" if pd.isna(r["change_pct"]) else f"{r['change_pct']:+.0f}%"
            line += [f"{r['count']:,}", count_text(r["prior_year"]), pct + (" *" if r["significant"] else "")]
        body_rows.append(line)
    t = Table(head + body_rows, repeatRows=2)
    st = TableStyle(
        grid_style.getCommands()
        + [("SPAN", (1, 0), (3, 0)), ("SPAN", (4, 0), (6, 0)), ("SPAN", (7, 0), (9, 0)), ("SPAN", (0, 0), (0, 1))]
    )
    t.setStyle(st)
    story += [
        t,
        Paragraph(
            f"* the change against the year before is beyond chance (exact conditional binomial "
            f"test of the two Poisson counts, two-sided, alpha {cs.alpha:g}): a rise from 1 to 2 "
            "is not flagged. 3-year averages and the period before are in the CSV/JSON exports.",
            small,
        ),
    ]
    story.append(PageBreak())
    section("Hot-spot map")
    story.append(Paragraph(f"Where incidents concentrated over {date_range}.", small))
    story.append(Image(io.BytesIO(hot_png), width=7.0 * inch, height=6.4 * inch, kind="proportional"))
    story.append(PageBreak())
    section("What changed")
    story.append(Image(io.BytesIO(ch_png), width=6.4 * inch, height=5.4 * inch, kind="proportional"))
    rises = ch.table
    if len(rises):
        data = [["#", "Where", "District", "Now", "Expected", "Rise", "Also"]]
        ncell = 0
        for r in rises.itertuples(index=False):
            if r.unit == "cell":
                ncell += 1
                rank = str(ncell)
            else:
                rank = "district"
            data.append(
                [
                    rank,
                    Paragraph(r.place or str(r.key), small),
                    r.district,
                    f"{r.current:,}",
                    f"{r.expected:.1f}",
                    f"x{r.ratio:.1f}",
                    r.ehsa,
                ]
            )
        tt = Table(
            data,
            colWidths=[0.6 * inch, 2.9 * inch, 0.6 * inch, 0.5 * inch, 0.7 * inch, 0.5 * inch, 1.5 * inch],
            repeatRows=1,
        )
        tt.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), "Helvetica", 7.5),
                    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
                    ("GRID", (0, 0), (-1, -1), 0.3, colors.black),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        story.append(tt)
    else:
        story.append(Paragraph("Nothing rose beyond chance in the last 28 days against the 84 days before.", body))
    story.append(
        Paragraph(
            f"Test: {ch.summary()['test']}; {ch.tested.get('cell', 0)} cells and "
            f"{ch.tested.get('district', 0)} districts tested. 'Also' = the Emerging Hot Spot "
            "class of the cell over the last 12 weeks, where it agrees.",
            small,
        )
    )
    story.append(PageBreak())
    section("Top places by block address")
    story.append(Paragraph(f"Most frequent block addresses, {date_range}, all categories.", small))
    pt = [["Block address", "Incidents", "Share"]] + [
        [p.block, f"{p.n:,}", f"{p.share:.1%}"] for p in places.itertuples(index=False)
    ]
    ptab = Table(pt, repeatRows=1)
    ptab.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
                ("GRID", (0, 0), (-1, -1), 0.3, colors.black),
            ]
        )
    )
    story.append(ptab)
    section("Next shift: forecast and patrol plan")
    if plan is None:
        story.append(Paragraph(plan_note, body))
    else:
        story.append(
            Paragraph(
                f"Shift {plan.shift_start:%a %d %b %Y %H:%M} - {plan.shift_end:%H:%M %Z} ({plan_note}): "
                f"{len(plan.units)} unit(s); the patrol areas hold {plan.covered:.1f} of the {plan.total:.1f} "
                f"incidents forecast ({plan.covered_share:.0%}).",
                body,
            )
        )
        lines = [["Unit", "Area centre", "Why here"]]
        for u, areas in sorted(plan.units.items()):
            for a in areas:
                row = plan.cells[(plan.cells["centre"] == a) & (plan.cells["cell"] == a)].iloc[0]
                lines.append([str(u), _place_of(row), Paragraph(str(row["reason"]), small)])
        pl = Table(lines, colWidths=[0.5 * inch, 2.2 * inch, 4.6 * inch], repeatRows=1)
        pl.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), "Helvetica", 7.5),
                    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
                    ("GRID", (0, 0), (-1, -1), 0.3, colors.black),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        story.append(pl)
    section("Caveats")
    for c in caveats:
        story.append(Paragraph("- " + c, small))
    story.append(Spacer(1, 6))

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(0.6 * inch, 0.4 * inch, f"rtcc-geo briefing - {cs.source} - {who} - through {cs.end}")
        canvas.drawRightString(7.9 * inch, 0.4 * inch, f"page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(
        str(path),
        pagesize=letter,
        leftMargin=0.6 * inch,
        rightMargin=0.6 * inch,
        topMargin=0.5 * inch,
        bottomMargin=0.6 * inch,
        title=f"Briefing {cs.source} {cs.end}",
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return sections


def _place_of(row) -> str:
    """A patrol area's centre named by the store's own addresses when known (set by :func:`briefing`)."""
    return str(row.get("place") or row["centre_hex"])


def _page_count(path: Path) -> int:
    import re

    return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))
