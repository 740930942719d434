"""Erlang-C queueing: probability of wait, service level, ASA, agents required.

An RTCC desk is modelled as an M/M/N queue: events arrive as a Poisson
stream of rate :math:`\\lambda` per hour, an operator handles one event for an
exponentially distributed time of mean :math:`h` (the *handle time*), and
events that find every operator busy wait in a queue (nobody hangs up).

Offered load (erlangs)
    :math:`A = \\lambda h` - the average number of operators kept busy.

Erlang B (blocking), by the numerically stable recursion
    :math:`B(0, A) = 1,\\quad B(k, A) = \\dfrac{A\\,B(k-1, A)}{k + A\\,B(k-1, A)}`.
    Every term lies in (0, 1], so there is no factorial or power to overflow
    (the direct formula :math:`\\frac{A^N/N!}{\\sum_{k\\le N} A^k/k!}` overflows
    double precision from about N = 170).

Erlang C (probability an event has to wait), for :math:`N > A`
    :math:`C(N, A) = \\dfrac{N\\,B(N, A)}{N - A\\,(1 - B(N, A))}`, and 1 when
    :math:`N \\le A` (the queue grows without bound).

Service level (share of events picked up within :math:`t`)
    :math:`SL = 1 - C(N, A)\\,e^{-(N - A)\\,t / h}`.

Average speed of answer (mean wait over all events)
    :math:`ASA = C(N, A)\\,h / (N - A)`.

Operators required
    The smallest :math:`N > A` with :math:`SL \\ge` the target (and, if given,
    occupancy :math:`A/N \\le` a cap). The simpler *utilisation rule*
    :func:`utilisation_agents` is :math:`\\lceil A / u \\rceil` for a target
    occupancy :math:`u` - what many agencies use when they have no queue data.

All functions are vectorised over arrays of loads (numpy broadcasting).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "offered_load",
    "erlang_b",
    "erlang_c",
    "service_level",
    "asa",
    "occupancy",
    "required_agents",
    "utilisation_agents",
]


def offered_load(rate_per_hour, handle_minutes: float) -> np.ndarray:
    """Offered load in erlangs, :math:`A = \\lambda h` (rate per hour x handle hours)."""
    if handle_minutes <= 0:
        raise ValueError(
            f"handle_minutes must be > 0 (got {handle_minutes}); it is the mean minutes an operator spends on one event"
        )
    rate = np.asarray(rate_per_hour, dtype="float64")
    if np.any(rate < 0) or not np.all(np.isfinite(rate)):
        raise ValueError("event rates must be finite and >= 0")
    return rate * (handle_minutes / 60.0)


def _check(n, a) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(n)
    a = np.asarray(a, dtype="float64")
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError("offered load A must be finite and >= 0")
    if np.any(n < 0) or np.any(np.asarray(n, dtype="float64") != np.floor(np.asarray(n, dtype="float64"))):
        raise ValueError("number of agents N must be a non-negative integer")
    return n.astype(np.int64), a


def erlang_b(n, a) -> np.ndarray:
    """Erlang-B blocking probability :math:`B(N, A)` by the stable recursion.

    ``n`` and ``a`` broadcast against each other. ``B(0, A) = 1``;
    ``B(N, 0) = 0`` for ``N >= 1``.
    """
    n, a = _check(n, a)
    n, a = np.broadcast_arrays(n, a)
    out = np.ones(a.shape, dtype="float64")
    b = np.ones(a.shape, dtype="float64")
    nmax = int(n.max()) if n.size else 0
    for k in range(1, nmax + 1):
        ab = a * b
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(ab == 0.0, 0.0, ab / (k + ab))
        out = np.where(n == k, b, out)
    return out


def erlang_c(n, a) -> np.ndarray:
    """Erlang-C probability that an event waits, :math:`C(N, A)`; 1 where ``N <= A``.

    ``C(N, 0) = 0`` for ``N >= 1``.
    """
    n, a = _check(n, a)
    n, a = np.broadcast_arrays(n, a)
    b = erlang_b(n, a)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = n * b / (n - a * (1.0 - b))
    c = np.where(n > a, c, 1.0)
    return np.clip(c, 0.0, 1.0)


def service_level(n, a, target_seconds: float, handle_seconds: float) -> np.ndarray:
    """Share of events picked up within ``target_seconds``: :math:`1 - C e^{-(N-A)t/h}`.

    0 where ``N <= A`` (unstable queue).
    """
    if handle_seconds <= 0:
        raise ValueError("handle time must be > 0")
    if target_seconds < 0:
        raise ValueError("target answer time must be >= 0 seconds")
    n, a = _check(n, a)
    n, a = np.broadcast_arrays(n, a)
    c = erlang_c(n, a)
    sl = 1.0 - c * np.exp(-(n - a) * (target_seconds / handle_seconds))
    return np.where(n > a, sl, 0.0)


def asa(n, a, handle_seconds: float) -> np.ndarray:
    """Average speed of answer (seconds) over all events, :math:`C h / (N - A)`; inf where ``N <= A``."""
    n, a = _check(n, a)
    n, a = np.broadcast_arrays(n, a)
    c = erlang_c(n, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = c * handle_seconds / (n - a)
    return np.where(n > a, w, np.inf)


def occupancy(n, a) -> np.ndarray:
    """Operator occupancy :math:`A / N` (capped at 1); 0 where ``N = 0``."""
    n, a = _check(n, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.minimum(a / np.maximum(n, 1), 1.0), 0.0)


def required_agents(
    a,
    service_level_target: float = 0.9,
    target_seconds: float = 60.0,
    handle_seconds: float = 1200.0,
    max_occupancy: float | None = None,
    n_max: int = 10_000,
) -> np.ndarray:
    """Fewest operators :math:`N` with :math:`SL(N, A) \\ge` ``service_level_target``.

    ``a`` is the offered load in erlangs (array). ``A = 0`` needs 0 operators.
    With ``max_occupancy`` the answer is also at least :math:`\\lceil A / \\text{max} \\rceil`.
    The search walks :math:`N = 1, 2, \\dots` carrying the Erlang-B recursion,
    so all loads are answered in one pass of :math:`\\max N` steps.
    """
    if not 0.0 < service_level_target < 1.0:
        raise ValueError(f"service level must be a share in (0, 1), e.g. 0.9 for 90 % (got {service_level_target})")
    if max_occupancy is not None and not 0.0 < max_occupancy <= 1.0:
        raise ValueError(f"max_occupancy must be in (0, 1] (got {max_occupancy})")
    a = np.asarray(a, dtype="float64")
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError("offered load A must be finite and >= 0")
    if handle_seconds <= 0 or target_seconds < 0:
        raise ValueError("handle time must be > 0 and the target answer time >= 0 seconds")
    flat = a.ravel()
    need = np.where(flat == 0.0, 0, -1).astype(np.int64)
    b = np.ones_like(flat)
    ratio = target_seconds / handle_seconds
    for k in range(1, n_max + 1):
        ab = flat * b
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(ab == 0.0, 0.0, ab / (k + ab))
            c = k * b / (k - flat * (1.0 - b))
        ok = (k > flat) & (1.0 - c * np.exp(-(k - flat) * ratio) >= service_level_target)
        if max_occupancy is not None:
            ok &= flat / k <= max_occupancy + 1e-12
        newly = ok & (need < 0)
        need[newly] = k
        if (need >= 0).all():
            break
    if (need < 0).any():
        raise ValueError(f"no operator count up to {n_max} reaches the service level; check the load and handle time")
    return need.reshape(a.shape)


def utilisation_agents(a, target_utilisation: float = 0.8) -> np.ndarray:
    """The rule of thumb :math:`N = \\lceil A / u \\rceil` (at least 1 where ``A > 0``)."""
    if not 0.0 < target_utilisation <= 1.0:
        raise ValueError(f"target utilisation must be in (0, 1] (got {target_utilisation})")
    a = np.asarray(a, dtype="float64")
    n = np.ceil(a / target_utilisation - 1e-12)
    return np.where(a > 0, np.maximum(n, 1), 0).astype(np.int64)
