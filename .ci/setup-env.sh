#!/usr/bin/env bash
# Create the virtual environment and install rtcc-geo (and, with --test, what the tests need:
# test Python packages, the PostGIS extension, Chromium + ChromeDriver, a running cluster and
# a test database). Idempotent: re-running installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0; [ "${1:-}" = "--test" ] && want_test=1
PY=${PYTHON:-python3}

say() { echo "[setup] $*" >&2; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
if [ $want_test = 1 ]; then extra='.[test]'; else extra='.'; fi
if ! .venv/bin/python -c "import rtcc_geo" 2>/dev/null || [ "${RTCC_REINSTALL:-1}" = 1 ]; then
  say "installing rtcc-geo ($extra) into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$extra"
fi
[ $want_test = 1 ] || exit 0

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  say "need root to run: $*  (run this script as root, or install it yourself)"; return 1; fi; }
apt_updated=0
apt_install() {
  [ $apt_updated = 1 ] || { as_root apt-get update -q >/dev/null; apt_updated=1; }
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "$@" >/dev/null
}

PGVER=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$PGVER" ]; then
  say "no PostgreSQL cluster under /etc/postgresql: installing postgresql"
  apt_install postgresql
  PGVER=$(ls /etc/postgresql | sort -V | tail -n 1)
fi
if [ ! -f "/usr/share/postgresql/$PGVER/extension/postgis.control" ]; then
  apt_install "postgresql-$PGVER-postgis-3"
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_install chromium chromium-driver
fi
# pdftoppm / pdftotext: the briefing test renders the PDF's pages (tests/test_briefing.py)
if ! command -v pdftoppm >/dev/null || ! command -v pdftotext >/dev/null; then
  apt_install poppler-utils
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  say "starting PostgreSQL $PGVER"
  as_root pg_ctlcluster --skip-systemctl-redirect "$PGVER" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { say "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }

DB=${RTCC_TEST_DB:-rtcc_test}
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1; then
  say "creating database $DB"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "create database $DB"
fi
PGOPTIONS="--client-min-messages=warning" psql -h 127.0.0.1 -U postgres -d "$DB" -qc "create extension if not exists postgis" >/dev/null
say "ready: PostGIS $(psql -h 127.0.0.1 -U postgres -d "$DB" -tAc 'select postgis_lib_version()'), $(chromium --version 2>/dev/null | head -n 1)"
