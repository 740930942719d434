"""Loaders for the live open-data portals, writing the CSV files the readers consume.

* :func:`fetch_socrata` pages through a Socrata SODA endpoint (City of Chicago
  ``ijzp-q8t2`` and other Socrata "Crimes" portals) and writes the portal
  schema CSV the ``chicago`` reader (and ``data/mappings/chicago_portal.toml``)
  reads. Dates keep the API's ISO form (``2018-01-01T00:00:00.000``, local
  time), which the reader accepts.
* :func:`fetch_carto` pages through the Carto SQL API (Philadelphia's
  ``incidents_part1_part2``) with ``format=csv``, which is byte-for-byte the
  layout of the OpenDataPhilly extracts the ``philadelphia`` reader reads.

Both use only the standard library (``urllib``), page with a stable order
(``:id`` / ``cartodb_id``) and ``LIMIT``/``OFFSET`` until a short page, retry
throttling / server errors with back-off, and stream each page to disk (memory
stays bounded by one page). ``opener`` can be injected (tests serve recorded
responses from a local ``http.server``; nothing leaves the machine).

>>> fetch_socrata("https://data.cityofchicago.org", "ijzp-q8t2", "chicago_2024_01.csv",
...               where="date >= '2024-01-01T00:00:00' AND date < '2024-02-01T00:00:00'")  # doctest: +SKIP
>>> fetch_carto("incidents_2024_01.csv",
...             where="dispatch_date_time >= '2024-01-01' AND dispatch_date_time < '2024-02-01'")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from collections.abc import Callable

#: The portal schema of Chicago's crimes dataset, in the order the portal exports it.
CHICAGO_COLUMNS = (
    "id",
    "case_number",
    "date",
    "block",
    "iucr",
    "primary_type",
    "description",
    "location_description",
    "arrest",
    "domestic",
    "beat",
    "district",
    "ward",
    "community_area",
    "fbi_code",
    "x_coordinate",
    "y_coordinate",
    "year",
    "updated_on",
    "latitude",
    "longitude",
    "location",
)
CHICAGO_BASE = "https://data.cityofchicago.org"
CHICAGO_DATASET = "ijzp-q8t2"
CARTO_SQL = "https://phl.carto.com/api/v2/sql"
PHILADELPHIA_TABLE = "incidents_part1_part2"

#: ``opener(url, headers) -> bytes``
Opener = Callable[[str, dict], bytes]


class PortalError(RuntimeError):
    """The portal answered with an error we cannot retry past; the message has its reply."""


def urllib_opener(timeout: float = 60.0, retries: int = 4, backoff: float = 2.0) -> Opener:
    """The default opener: GET with retries on 429 / 5xx / connection errors."""

    def open_(url: str, headers: dict) -> bytes:
        req = urllib.request.Request(url, headers={"User-Agent": "rtcc-geo", **headers})
        for attempt in range(retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    return r.read()
            except urllib.error.HTTPError as e:
                body = e.read()[:500].decode("utf-8", "replace")
                if e.code in (429, 500, 502, 503, 504) and attempt < retries:
                    time.sleep(backoff * 2**attempt)
                    continue
                raise PortalError(f"{url}: HTTP {e.code}: {body}") from None
            except urllib.error.URLError as e:
                if attempt < retries:
                    time.sleep(backoff * 2**attempt)
                    continue
                raise PortalError(f"{url}: {e.reason}. Check the network / portal address.") from None
        raise AssertionError("unreachable")

    return open_


@contextlib.contextmanager
def _partial(tmp: Path):
    """Write to ``tmp``; on any error remove it so no half-written file is left."""
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            yield f
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):  # Socrata location: {"latitude": .., "longitude": .., ...}
        if "latitude" in v and "longitude" in v:
            return f"({v['latitude']}, {v['longitude']})"
        if v.get("type") == "Point" and "coordinates" in v:
            lon, lat = v["coordinates"][:2]
            return f"({lat}, {lon})"
        return json.dumps(v)
    return str(v)


def fetch_socrata(
    base_url: str,
    dataset: str,
    out: str | Path,
    where: str | None = None,
    columns: tuple[str, ...] = CHICAGO_COLUMNS,
    page_size: int = 50_000,
    app_token: str | None = None,
    opener: Opener | None = None,
    max_rows: int | None = None,
) -> int:
    """Page through ``{base_url}/resource/{dataset}.json`` and write ``out`` (CSV,
    ``columns`` in order). Returns the number of data rows written.

    ``where`` is a SoQL filter (e.g. a date range); an app token raises the
    portal's throttling limits.
    """
    opener = opener or urllib_opener()
    headers = {"Accept": "application/json"}
    if app_token:
        headers["X-App-Token"] = app_token
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    n = 0
    with _partial(tmp) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        offset = 0
        while True:
            limit = page_size if max_rows is None else min(page_size, max_rows - n)
            if limit <= 0:
                break
            params = {"$limit": str(limit), "$offset": str(offset), "$order": ":id"}
            if where:
                params["$where"] = where
            url = f"{base_url.rstrip('/')}/resource/{dataset}.json?{urllib.parse.urlencode(params)}"
            try:
                page = json.loads(opener(url, headers))
            except json.JSONDecodeError as e:
                raise PortalError(f"{url}: reply is not JSON ({e})") from None
            if isinstance(page, dict):  # Socrata error object
                raise PortalError(f"{url}: {page.get('message') or page}")
            for rec in page:
                w.writerow([_text(rec.get(c)) for c in columns])
            n += len(page)
            offset += len(page)
            if len(page) < limit:
                break
    tmp.replace(out)
    return n


def fetch_carto(
    out: str | Path,
    where: str | None = None,
    table: str = PHILADELPHIA_TABLE,
    base_url: str = CARTO_SQL,
    page_size: int = 50_000,
    opener: Opener | None = None,
    api_key: str | None = None,
    max_rows: int | None = None,
) -> int:
    """Page through a Carto table with the SQL API (``format=csv``) and write
    ``out``. Returns the number of data rows written.

    ``where`` is an SQL condition on the table, e.g.
    ``"dispatch_date_time >= '2024-01-01' AND dispatch_date_time < '2024-02-01'"``.
    """
    opener = opener or urllib_opener()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    n = 0
    header: list[str] | None = None
    with _partial(tmp) as f:
        w = csv.writer(f, lineterminator="\n")
        offset = 0
        while True:
            limit = page_size if max_rows is None else min(page_size, max_rows - n)
            if limit <= 0:
                break
            sql = (
                f"SELECT * FROM {table}"
                + (f" WHERE {where}" if where else "")
                + f" ORDER BY cartodb_id LIMIT {limit} OFFSET {offset}"
            )
            params = {"q": sql, "format": "csv"}
            if api_key:
                params["api_key"] = api_key
            url = f"{base_url}?{urllib.parse.urlencode(params)}"
            body = opener(url, {"Accept": "text/csv"}).decode("utf-8-sig")
            if body.lstrip().startswith("{"):  # Carto errors come back as JSON
                raise PortalError(f"{url}: {body[:500]}")
            rows = list(csv.reader(io.StringIO(body)))
            if not rows:
                raise PortalError(f"{url}: empty reply (expected a CSV header)")
            head, data = rows[0], rows[1:]
            if header is None:
                header = head
                w.writerow(header)
            elif head != header:
                raise PortalError(f"{url}: columns changed between pages ({header} -> {head})")
            w.writerows(data)
            n += len(data)
            offset += len(data)
            if len(data) < limit:
                break
    tmp.replace(out)
    return n
