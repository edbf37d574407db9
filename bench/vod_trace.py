"""Synthetic VOD request trace for the cache policy simulation (``bench/policy_sim.py``).

What the trace models, and the numbers behind each choice:

- **Titles made of segment files.** A title is a clip (2-10 min), an episode (20-50 min) or a
  movie (85-140 min), cut into 6 s segments (Apple's HLS recommendation). Every segment exists in
  several renditions; a cache key is one (title, rendition, segment), e.g.
  ``/v/c000123/h264-720p/seg-00042.m4s`` (``c`` catalog, ``n`` new release, ``d`` deep tail).
- **Segment-like sizes.** The ladder is 0.4 / 0.8 / 1.6 / 3 / 6 / 16 Mbit/s (240p ... 2160p), so a
  6 s segment is about 0.3 / 0.6 / 1.2 / 2.25 / 4.5 / 12 MB; a per-segment VBR factor
  (log-normal, sigma 0.3) spreads them, clipped to 0.3-20 MB. Clips have no 2160p rendition.
- **Viewing sessions.** A viewer plays one title's segments in order from the start, one request
  per segment, 6 s apart, so sessions overlap and their requests interleave. Many abandon early:
  25 % only sample it (geometric, mean 8 segments = 48 s), 35 % watch to (nearly) the end, the rest
  stop at a uniformly random point. Early segments are therefore the most popular ones.
- **Renditions.** The start rung follows a fixed-broadband device mix (240p 2 %, 360p 4 %, 480p
  8 %, 720p 22 %, 1080p 52 %, 2160p 12 %); the first two segments are fetched two rungs lower (ABR
  start-up), and at each segment the player moves one rung up or down with probability 1 %.
- **Popularity flatter than Zipf at the head.** Catalog titles are chosen by Zipf with
  alpha = 0.7 over their rank (alpha 1 would be the classic web Zipf; VOD catalogs measure flatter).
- **New releases.** 24 titles released during the trace (or in the day before it starts) begin
  at 0.8-2x the popularity of a top-5 catalog title and decay as ``(1 + age / tau) ** -1.5`` with
  ``tau`` between 3 and 12 hours.
- **One-hit long tail.** 10 % of sessions pick a deep-catalog title that nobody else watches in
  the trace (every segment it fetches is requested exactly once), on top of the one-hit objects
  that the Zipf tail produces by itself: about 60 % of all objects are requested once.
- **Time of day.** Session starts follow a diurnal curve (evening peak 1.8x the mean, early
  morning trough 0.2x) over three days.
- **Scale.** The default run is ~0.9 M requests from ~4,300 sessions over a catalog of 200 titles
  (~400 k distinct objects, ~1.8 TB). Python simulates ~1 M requests per policy and cache size
  within the benchmark's minute, so the catalog is sized to give those sessions the reuse a busy
  edge sees (about 40 % of requested bytes are compulsory misses); a shorter trace
  (:meth:`TraceConfig.scaled`) shrinks the catalog with it to keep that reuse.

Everything comes from one seeded :class:`random.Random`, so a seed gives the same trace bit for
bit. Objects are numbered densely in order of first request and kept in compact arrays.
"""

from __future__ import annotations

import bisect
import math
import random
from array import array
from dataclasses import dataclass

SEGMENT_S = 6.0
LADDER = ("240p", "360p", "480p", "720p", "1080p", "2160p")
LADDER_KBPS = (400, 800, 1600, 3000, 6000, 16000)
RUNG_SHARE = (0.02, 0.04, 0.08, 0.22, 0.52, 0.12)
MIN_SIZE = 300_000
MAX_SIZE = 20_000_000
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """Shape of the synthetic trace; the defaults are the benchmark's full run."""

    requests: int = 1_000_000
    """Approximate number of requests (the last sessions may overshoot a little)."""
    seed: int = 20240611
    days: float = 3.0
    """Simulated wall time over which sessions start."""
    catalog_titles: int = 200
    """Titles in the steady catalog (Zipf-ranked)."""
    zipf_alpha: float = 0.7
    """Head of the catalog popularity; below 1 is flatter than classic Zipf."""
    releases: int = 24
    """New titles whose popularity starts hot and decays during the trace."""
    tail_share: float = 0.1
    """Share of sessions that watch a title nobody else watches (one-hit objects)."""
    sample_share: float = 0.25
    """Share of sessions that only sample the first few segments."""
    complete_share: float = 0.35
    """Share of sessions that watch to the end (or within the credits)."""

    @classmethod
    def scaled(cls, requests: int, seed: int = 20240611) -> TraceConfig:
        """A shorter or longer trace with the same reuse: the catalog scales with the requests."""
        base = cls()
        titles = max(20, round(base.catalog_titles * requests / base.requests))
        return cls(requests=requests, seed=seed, catalog_titles=titles)


@dataclass(slots=True)
class Trace:
    """A request trace: ``objects[i]`` is requested at ``times[i]`` (seconds, ascending)."""

    times: array[float]
    objects: array[int]
    sizes: array[int]
    """Size in bytes of object ``n``."""
    keys: list[str]
    """Cache key of object ``n``."""

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def catalog_bytes(self) -> int:
        """Bytes of all distinct objects the trace requests (the base of the cache sizes)."""
        return sum(self.sizes)

    def requested_bytes(self) -> int:
        sizes = self.sizes
        return sum(sizes[o] for o in self.objects)


@dataclass(slots=True)
class _Title:
    name: str
    segments: int
    top_rung: int


def _new_title(rng: random.Random, name: str) -> _Title:
    kind = rng.random()
    if kind < 0.3:
        minutes = rng.uniform(2, 10)
        top = len(LADDER) - 2
    elif kind < 0.8:
        minutes = rng.uniform(20, 50)
        top = len(LADDER) - 1
    else:
        minutes = rng.uniform(85, 140)
        top = len(LADDER) - 1
    return _Title(name, max(1, round(minutes * 60 / SEGMENT_S)), top)


def _diurnal(t: float) -> float:
    """Relative session start rate at time ``t`` (peak 1.8 around 21:00, trough 0.2)."""
    hour = (t % DAY_S) / 3600.0
    return 1.0 + 0.8 * math.cos((hour - 21.0) / 24.0 * 2 * math.pi)


def _session_start_times(rng: random.Random, n: int, span: float) -> list[float]:
    out: list[float] = []
    while len(out) < n:
        t = rng.uniform(0.0, span)
        if rng.random() * 1.8 < _diurnal(t):
            out.append(t)
    out.sort()
    return out


def _watch_length(rng: random.Random, cfg: TraceConfig, segments: int) -> int:
    u = rng.random()
    if u < cfg.sample_share:
        n = 1 + int(rng.expovariate(1 / 7.0))
    elif u < cfg.sample_share + cfg.complete_share:
        n = segments - int(rng.uniform(0, 0.05) * segments)
    else:
        n = 1 + int(rng.random() * segments)
    return max(1, min(n, segments))


def _start_rung(rng: random.Random, top: int) -> int:
    rung = bisect.bisect_left(_RUNG_CUM, rng.random())
    return min(rung, top)


_RUNG_CUM = [sum(RUNG_SHARE[: i + 1]) for i in range(len(RUNG_SHARE))]


class _Builder:
    """Turns (title, rendition, segment) into dense object numbers, sizes and keys."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids: dict[tuple[int, int, int], int] = {}
        self.sizes: array[int] = array("q")
        self.keys: list[str] = []

    def object(self, title_no: int, title: _Title, rung: int, seg: int) -> int:
        ident = (title_no, rung, seg)
        oid = self.ids.get(ident)
        if oid is None:
            oid = len(self.keys)
            self.ids[ident] = oid
            nominal = LADDER_KBPS[rung] * 1000 * SEGMENT_S / 8
            size = nominal * self.rng.lognormvariate(0.0, 0.3)
            self.sizes.append(int(min(MAX_SIZE, max(MIN_SIZE, size))))
            self.keys.append(f"/v/{title.name}/h264-{LADDER[rung]}/seg-{seg:05d}.m4s")
        return oid


def generate(cfg: TraceConfig | None = None) -> Trace:
    """Build the trace described in the module docstring (deterministic for ``cfg.seed``)."""
    cfg = cfg or TraceConfig()
    rng = random.Random(cfg.seed)
    span = cfg.days * DAY_S

    catalog = [_new_title(rng, f"c{i:06d}") for i in range(cfg.catalog_titles)]
    weights = [(rank + 1) ** -cfg.zipf_alpha for rank in range(cfg.catalog_titles)]
    rng.shuffle(catalog)  # rank is independent of title length
    cum = [0.0] * len(weights)
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        cum[i] = acc
    catalog_mass = acc

    # A release peaks at the share of a top-5 catalog title and decays with age.
    releases = [_new_title(rng, f"n{i:04d}") for i in range(cfg.releases)]
    release_at = [rng.uniform(-DAY_S, span) for _ in releases]
    release_peak = [weights[rng.randrange(5)] * rng.uniform(0.8, 2.0) for _ in releases]
    release_tau = [rng.uniform(3, 12) * 3600.0 for _ in releases]

    # Requests per session average ~150 with the defaults; n sessions is sized from a probe.
    probe = random.Random(cfg.seed ^ 0x5EED)
    mean_len = (
        sum(_watch_length(probe, cfg, _new_title(probe, "p").segments) for _ in range(4000)) / 4000
    )
    starts = _session_start_times(rng, max(1, round(cfg.requests / mean_len)), span)

    build = _Builder(rng)
    events: list[tuple[float, int]] = []
    tail_no = 0
    for start in starts:
        live = [
            (i, release_peak[i] * (1 + (start - at) / release_tau[i]) ** -1.5)
            for i, at in enumerate(release_at)
            if at <= start
        ]
        release_mass = sum(w for _, w in live)
        u = rng.random()
        if u < cfg.tail_share:
            tail_no += 1
            title_no = -tail_no
            title = _new_title(rng, f"d{tail_no:06d}")
        else:
            pick = rng.random() * (catalog_mass + release_mass)
            if pick < catalog_mass:
                title_no = bisect.bisect_left(cum, pick)
                title = catalog[title_no]
            else:
                pick -= catalog_mass
                title_no = live[-1][0]
                for i, w in live:
                    if pick < w:
                        title_no = i
                        break
                    pick -= w
                title = releases[title_no]
                title_no += cfg.catalog_titles
        rung = _start_rung(rng, title.top_rung)
        t = start
        for seg in range(_watch_length(rng, cfg, title.segments)):
            fetch = max(0, rung - 2) if seg < 2 else rung
            events.append((t, build.object(title_no, title, fetch, seg)))
            t += SEGMENT_S * rng.uniform(0.9, 1.1)
            if rng.random() < 0.01:
                rung = min(title.top_rung, max(0, rung + rng.choice((-1, 1))))

    events.sort()
    return Trace(
        times=array("d", (t for t, _ in events)),
        objects=array("l", (o for _, o in events)),
        sizes=build.sizes,
        keys=build.keys,
    )


def describe(trace: Trace) -> dict[str, float]:
    """Summary numbers printed with the simulation results."""
    counts = [0] * len(trace.sizes)
    for o in trace.objects:
        counts[o] += 1
    sizes = trace.sizes
    one_hit = [o for o, c in enumerate(counts) if c == 1]
    catalog = trace.catalog_bytes
    return {
        "requests": float(len(trace)),
        "objects": float(len(sizes)),
        "catalog_gb": catalog / 1e9,
        "requested_gb": trace.requested_bytes() / 1e9,
        "one_hit_objects_pct": 100.0 * len(one_hit) / len(sizes),
        "one_hit_bytes_pct": 100.0 * sum(sizes[o] for o in one_hit) / catalog,
        "mean_object_mb": catalog / len(sizes) / 1e6,
        "compulsory_byte_miss": catalog / trace.requested_bytes(),
    }
