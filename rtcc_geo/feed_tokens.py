"""Bearer tokens of the live feed, one set per source.

A token opens ``POST /api/feed/<source>/incidents`` for its own source only:
the Philadelphia CAD bridge cannot create Vancouver incidents. Tokens come
from (all are merged; several tokens per source let you rotate one):

``RTCC_FEED_TOKENS``
    ``philadelphia=TOKEN,vancouver=TOKEN`` (comma or whitespace separated).
``RTCC_FEED_TOKEN_FILE`` or ``rtcc-geo serve --feed-token-file PATH``
    One ``source=token`` per line (``#`` comments); a line with a bare token
    is for the served source. Keep the file readable by the server only.
``RTCC_FEED_TOKEN``
    One token for the served source.
``rtcc-geo serve --feed-token TOKEN``
    Still works, but anyone on the machine sees it in ``ps``: prefer the
    environment or a file.

Tokens are compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from pathlib import Path

_PAIR = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(\S+)\s*$")
MIN_TOKEN = 8


class FeedTokens:
    """``source -> tokens``; :meth:`authorize` checks an ``Authorization`` header."""

    def __init__(self, tokens: dict[str, list[str]] | None = None):
        self.tokens = {s: [t for t in ts if t] for s, ts in (tokens or {}).items()}
        for s, ts in self.tokens.items():
            for t in ts:
                if len(t) < MIN_TOKEN:
                    raise ValueError(
                        f"the feed token for {s!r} is too short: use at least {MIN_TOKEN} "
                        "random characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                    )

    def __bool__(self) -> bool:
        return any(self.tokens.values())

    def sources(self) -> list[str]:
        return sorted(s for s, ts in self.tokens.items() if ts)

    def authorize(self, source: str, header: str) -> str | None:
        """A label of the token (``source#n``, never the token) if ``header`` is
        ``Bearer <a token of source>``, else ``None``."""
        got = (header or "").encode()
        hit = None
        for i, t in enumerate(self.tokens.get(source, ())):
            # Compare against every token so timing does not say which one matched.
            if hmac.compare_digest(got, f"Bearer {t}".encode()):
                hit = f"{source}#{i + 1}"
        return hit

    @classmethod
    def load(
        cls,
        source: str | None,
        token: str | None = None,
        file: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
    ) -> FeedTokens:
        """Merge the token of ``--feed-token``, the token file and the environment."""
        env = os.environ if env is None else env
        out: dict[str, list[str]] = {}

        def add(src: str | None, tok: str, where: str) -> None:
            if src is None:
                raise ValueError(f"a feed token without a source in {where}: write source=token")
            out.setdefault(src, []).append(tok)

        if token:
            add(source, token, "--feed-token")
        if env.get("RTCC_FEED_TOKEN"):
            add(source, env["RTCC_FEED_TOKEN"].strip(), "RTCC_FEED_TOKEN")
        for item in re.split(r"[,\s]+", env.get("RTCC_FEED_TOKENS", "").strip()):
            if item:
                m = _PAIR.match(item)
                if not m:
                    raise ValueError("RTCC_FEED_TOKENS must read source=token,source=token")
                add(m.group(1), m.group(2), "RTCC_FEED_TOKENS")
        path = file or env.get("RTCC_FEED_TOKEN_FILE")
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise ValueError(f"cannot read the feed token file {path}: {e.strerror}") from None
            for n, line in enumerate(text.splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                m = _PAIR.match(line)
                if m:
                    add(m.group(1), m.group(2), f"{path}:{n}")
                elif len(line.split()) == 1:
                    add(source, line, f"{path}:{n}")
                else:
                    raise ValueError(f"{path}:{n}: write source=token or a bare token")
        return cls(out)
