"""Hit ratios and egress rate over the last minutes, from the workers' aggregated counters.

The supervisor reads the multiprocess metric files every few seconds (:func:`read_totals`) and
keeps the samples in a :class:`TrafficWindow`; ratios are differences between samples, so they
cover exactly the chosen span whatever the workers did before.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from appliance.metrics import NS

SERVED = ("hit", "miss", "collapsed")
"""Outcomes that count for hit ratios (errors and control requests do not)."""


@dataclass(frozen=True, slots=True)
class Totals:
    at: float
    requests: int
    hit_requests: int
    bytes: int
    hit_bytes: int


def read_totals(metrics_dir: str, now: float) -> Totals:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    sums: dict[str, list[float]] = {"requests": [0.0, 0.0], "response_bytes": [0.0, 0.0]}
    for family in registry.collect():
        acc = sums.get(family.name.removeprefix(f"{NS}_"))
        if acc is None:
            continue
        for s in family.samples:
            o = s.labels.get("outcome")
            if s.name.endswith("_total") and o in SERVED:
                acc[0] += s.value
                acc[1] += s.value if o == "hit" else 0.0
    (req, hit_req), (byt, hit_byt) = sums["requests"], sums["response_bytes"]
    return Totals(now, int(req), int(hit_req), int(byt), int(hit_byt))


class TrafficWindow:
    def __init__(self, span: float = 330.0) -> None:
        self.span = span
        self._samples: deque[Totals] = deque(maxlen=4096)

    def add(self, t: Totals) -> None:
        if self._samples and t.requests < self._samples[-1].requests:
            self._samples.clear()  # counters reset (all workers restarted)
        self._samples.append(t)
        while self._samples and t.at - self._samples[0].at > self.span:
            self._samples.popleft()

    def _since(self, seconds: float) -> tuple[Totals, Totals] | None:
        if len(self._samples) < 2:
            return None
        last = self._samples[-1]
        first = next((s for s in self._samples if last.at - s.at <= seconds), None)
        if first is None or first is last:
            first = self._samples[-2]
        return first, last

    def hit_ratios(self, seconds: float) -> tuple[float | None, float | None]:
        """(request hit ratio, byte hit ratio) over about ``seconds``; None without traffic."""
        pair = self._since(seconds)
        if pair is None:
            return None, None
        a, b = pair
        dr, db = b.requests - a.requests, b.bytes - a.bytes
        return (
            (b.hit_requests - a.hit_requests) / dr if dr > 0 else None,
            (b.hit_bytes - a.hit_bytes) / db if db > 0 else None,
        )

    def egress_rate(self, seconds: float = 10.0) -> float:
        """Body bytes per second sent to players over about the last ``seconds``."""
        pair = self._since(seconds)
        if pair is None:
            return 0.0
        a, b = pair
        dt = b.at - a.at
        return (b.bytes - a.bytes) / dt if dt > 0 else 0.0
