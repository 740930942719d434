"""Security records on both engines (embedded files, real PostGIS): sessions,
lock-out counters, the append-only audit log; the password rule; feed tokens."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtcc_geo.auth import Users, check_password, common_passwords
from rtcc_geo.auth_store import FileRecords, records_for
from rtcc_geo.feed_tokens import FeedTokens

PW = "amber-kettle-orbit"


@pytest.fixture(params=["embedded", "postgis"])
def store(request, tmp_path):
    if request.param == "embedded":
        from rtcc_geo.store.embedded import EmbeddedStore

        yield EmbeddedStore(tmp_path / "s")
    else:
        from rtcc_geo.store.postgis import PostGISStore

        url = request.getfixturevalue("pg_url")
        s = PostGISStore(url)
        yield s
        s.close()


def test_sessions_revoke_expire_and_are_stored_hashed(store):
    rec = records_for(store)
    t1 = rec.create_session("chief", lifetime_s=3600)
    t2 = rec.create_session("chief", lifetime_s=3600)
    t3 = rec.create_session("vic", lifetime_s=0.3)
    assert rec.session(t1).user == "chief" and rec.session(t3).user == "vic"
    assert rec.session("made-up-token") is None and rec.session("") is None
    s = rec.session(t1)
    time.sleep(0.35)
    rec.touch(t1, s)
    assert rec.session(t1).last_seen > s.last_seen and rec.session(t1).expires == s.expires
    assert rec.session(t3) is None  # past its absolute end
    assert rec.revoke_user("chief") == 2
    assert rec.session(t1) is None and rec.session(t2) is None
    t4 = rec.create_session("ana", lifetime_s=3600)
    rec.revoke(t4)
    assert rec.session(t4) is None
    # Only digests are kept: the token itself is nowhere in the store.
    t5 = rec.create_session("ana", lifetime_s=3600)
    if isinstance(rec, FileRecords):
        assert not any(t5 in p.read_text() or t5 in p.name for p in rec.dir.rglob("*") if p.is_file())
    else:
        rows = rec._x("SELECT sid_hash FROM auth_sessions", fetch=True)
        assert rows and all(t5 not in r[0] for r in rows)


def test_lockout_counter_doubles_and_clears(store):
    rec = records_for(store)
    key = "user:locky"
    for i in range(19):
        f = rec.record_failure(key, limit=20, lock_s=0.5, max_lock_s=10)
        assert f.count == i + 1 and f.locked_until == 0
    f = rec.record_failure(key, limit=20, lock_s=0.5, max_lock_s=10)
    assert f.count == 0 and f.locks == 1 and 0.4 < f.locked_until - time.time() <= 0.5
    assert rec.failures(key).locked_until == f.locked_until
    time.sleep(0.55)
    for _ in range(20):
        f = rec.record_failure(key, limit=20, lock_s=0.5, max_lock_s=10)
    assert f.locks == 2 and 0.9 < f.locked_until - time.time() <= 1.0  # twice as long
    rec.clear_failures(key)
    assert rec.failures(key).locked_until == 0 and rec.failures(key).locks == 2


def test_audit_is_append_only_and_filtered(store):
    import pandas as pd

    rec = records_for(store)
    users = Users(store, actor="chief")
    users.add("lee", PW, "analyst")
    users.set_role("lee", "viewer")
    users.set_password("lee", "new-lilac-harbour")
    assert users.remove("lee")
    rec.audit("login", "vic", {"role": "viewer"}, address="10.0.0.7")
    with pytest.raises(ValueError):
        rec.audit("rewrite_history", "vic")
    df = rec.read_audit()
    assert list(df["action"]) == ["user_add", "user_role", "user_password", "user_remove", "login"]
    assert list(df["user"]) == ["chief"] * 4 + ["vic"]
    assert df["detail"].iloc[1] == {"username": "lee", "from": "analyst", "to": "viewer", "sessions_ended": 0}
    assert list(rec.read_audit(user="vic")["address"]) == ["10.0.0.7"]
    now = pd.Timestamp.now(tz="UTC")
    assert len(rec.read_audit(start=now - pd.Timedelta(minutes=5), end=now + pd.Timedelta(minutes=5))) == 5
    assert rec.read_audit(end=now - pd.Timedelta(minutes=5)).empty
    if store.kind == "postgis":
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as conn:
            for sql in ("UPDATE audit_log SET username = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(sql)
        assert len(rec.read_audit()) == 5


def test_embedded_audit_from_concurrent_processes_loses_no_line(tmp_path):
    from rtcc_geo.store.embedded import EmbeddedStore

    root = tmp_path / "s"
    EmbeddedStore(root)
    code = (
        "import sys; from rtcc_geo.auth_store import FileRecords\n"
        "r = FileRecords(sys.argv[1])\n"
        "for i in range(150): r.audit('login', f'p{sys.argv[2]}', {'i': i, 'pad': 'x' * 500})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(k)]) for k in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    df = FileRecords(root).read_audit()
    assert len(df) == 600
    for k in range(4):
        assert sorted(d["i"] for d in df.loc[df["user"] == f"p{k}", "detail"]) == list(range(150))


def test_password_rule():
    assert len(common_passwords()) > 29_000 and "password" in common_passwords()
    for bad in (
        "short",
        "password1234",
        "Password1234!",
        "iloveyou12345",
        "1234567890123",
        "aaaaaaaaaaaaa",
        "abababababab",
    ):
        with pytest.raises(ValueError):
            check_password(bad)
    with pytest.raises(ValueError, match="user name"):
        check_password("chief-of-the-night", "chief")
    for good in (PW, "correct horse battery staple", "Tr0ub4dor&3-extra"):
        check_password(good, "chief")


def test_feed_tokens_per_source(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# comment\nvancouver=van-file-token-1\nbare-token-for-phl\n")
    t = FeedTokens.load(
        "philadelphia",
        token="flag-token-123",
        env={"RTCC_FEED_TOKENS": "chicago=chi-env-token-1, vancouver=van-env-token-2", "RTCC_FEED_TOKEN_FILE": str(f)},
    )
    assert t.sources() == ["chicago", "philadelphia", "vancouver"]
    assert t.authorize("philadelphia", "Bearer flag-token-123") == "philadelphia#1"
    assert t.authorize("philadelphia", "Bearer bare-token-for-phl") == "philadelphia#2"
    assert t.authorize("vancouver", "Bearer van-file-token-1") == "vancouver#2"
    assert t.authorize("vancouver", "Bearer flag-token-123") is None  # one source's token opens no other
    assert t.authorize("chicago", "Bearer van-env-token-2") is None
    assert t.authorize("nowhere", "Bearer flag-token-123") is None
    with pytest.raises(ValueError, match="too short"):
        FeedTokens.load("philadelphia", token="short")
    with pytest.raises(ValueError, match="source=token"):
        FeedTokens.load(None, env={"RTCC_FEED_TOKENS": "nonsense"})
    assert not FeedTokens.load("philadelphia", env={})
    assert Path(f).exists()
