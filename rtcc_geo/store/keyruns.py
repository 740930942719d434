"""A source's key index across all months: sorted runs of 64-bit id hashes (a log-structured merge).

Why: an incident re-sent in the same month is found by that month's own index,
but a corrected re-export can move one to another month, so every append must
also ask "is this id stored anywhere?". Searching every month's index costs
the store (``B log N_month`` per month, a file per month); these runs answer
it with a few sorted searches of the batch, memory-mapped, so only the pages
the search lands on are read (for a batch of ``B`` hashes at most ``B`` pages
per run, whatever its size).

Layout: ``keys/source=<s>/all/run-<lo>-<hi>.npy``, the sorted hashes of the
source's part files numbered ``lo..hi``. An append adds one run, then merges
the newest pair of neighbouring runs where the older is at most twice the
newer and the two hold at most :attr:`KeyRuns.max_merge` hashes together, if
there is one: one merge, never a cascade (a binary counter spread over the
following appends). Below that size runs grow geometrically and each hash is
rewritten ``O(log(C / B))`` times (``C`` = ``max_merge``, ``B`` the batch); a
run that would outgrow it is left as it is. So the worst append rewrites at
most ``C`` hashes (32 MB at the default), never the store. Runs only become
more numerous after an append that found nothing to merge, when every pair of
neighbours is either more than twice apart or above ``C`` together, so a
source of ``N`` hashes has at most about ``2 N / C + log2(C / B)`` runs, each
searched in ``B log C`` (memory-mapped: a sorted batch walks each run forward,
so only the pages it lands on are read, in order).
A merged run is written before its inputs are deleted, and a run whose range
lies inside another's is dead, so a crash never loses or doubles a hash.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

_RUN = re.compile(r"run-(\d+)-(\d+)\.npy")


class KeyRuns:
    """The runs in directory ``d``; ``save(path, sorted_hashes)`` writes one file atomically."""

    #: The largest run an append's merge may write (hashes, 32 MB): the bound on the
    #: worst append's merge whatever the store's size; larger runs are never merged again.
    max_merge: int = 1 << 22

    def __init__(self, d: Path, save: Callable[[Path, np.ndarray], None], max_merge: int | None = None):
        self.dir, self._save = d, save
        if max_merge is not None:
            self.max_merge = max_merge

    def _all(self) -> list[tuple[int, int, Path]]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in self.dir.iterdir():
            m = _RUN.fullmatch(p.name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), p))
        return sorted(out)

    def runs(self) -> list[tuple[int, int, Path]]:
        """Live runs ``(lo, hi, path)`` by ``lo`` (a run inside another's range is dead)."""
        runs = self._all()
        return [r for r in runs if not any(o[0] <= r[0] and r[1] <= o[1] and o[:2] != r[:2] for o in runs)]

    def top(self) -> int:
        """Highest part number covered (-1: no runs)."""
        return max((hi for _, hi, _ in self.runs()), default=-1)

    def arrays(self):
        """Each live run's hashes, memory-mapped."""
        for _, _, p in self.runs():
            yield np.load(p, mmap_mode="r")

    def add(self, lo: int, hi: int, hashes: np.ndarray) -> None:
        """Add the hashes of parts ``lo..hi`` as a run, then merge the newest pair of
        neighbouring runs of similar size (at most one merge: see the module doc)."""
        self._save(self.dir / f"run-{lo:08d}-{hi:08d}.npy", np.sort(np.asarray(hashes, dtype=np.uint64)))
        runs = self.runs()
        sizes = [len(np.load(p, mmap_mode="r")) for _, _, p in runs]  # the headers only
        for i in range(len(runs) - 1, 0, -1):
            if sizes[i - 1] <= 2 * sizes[i] and sizes[i - 1] + sizes[i] <= self.max_merge:
                (a_lo, _, a), (_, b_hi, b) = runs[i - 1], runs[i]
                merged = np.concatenate([np.load(a, mmap_mode="r"), np.load(b, mmap_mode="r")])
                merged.sort(kind="stable")  # two sorted runs: timsort merges them in linear time
                self._save(self.dir / f"run-{a_lo:08d}-{b_hi:08d}.npy", merged)
                self._drop_dead()
                return

    def reset(self, hi: int, hashes: np.ndarray) -> None:
        """Replace every run by one covering parts ``0..hi`` (a rebuild)."""
        self._save(self.dir / f"run-{0:08d}-{hi:08d}.npy", np.sort(np.asarray(hashes, dtype=np.uint64)))
        self._drop_dead()

    def _drop_dead(self) -> None:
        live = {p for _, _, p in self.runs()}
        for _, _, p in self._all():
            if p not in live:
                p.unlink(missing_ok=True)
