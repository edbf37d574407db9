"""Cache admission and eviction for one (worker, disk) shard: pooled title popularity + viewing
sessions, rate-threshold admission, sampled lowest-rate eviction.

Pure state, no I/O and no clock: the daemon passes ``now`` (wall-clock seconds, so that persisted
``last_access`` values stay comparable across restarts) and acts on what the methods return.

How the daemon drives it::

    hit   -> on_hit(key, now)                     (may be batched: count > 1)
    miss  -> admit(key, size, now)
             True  -> fill, store, on_insert(key, size, now), then evict(now) and delete the
                      returned keys from the disk
             False -> the fill streams the object to every waiter but does not store it
    purge -> on_remove(key)
    start -> restore(key, size, export_state(key) as persisted with the object, now) for every
             object on the disk, in any order

The policy
----------
Every object gets an estimated *request rate* (requests per second in the near future). For the
byte miss ratio every byte counts alike, so an object's worth per byte of disk is its rate,
whatever its size: eviction removes the lowest rate, admission stores a miss only if its rate
clearly beats what is being evicted. The rate is the sum of two online estimates:

- **Popularity.** Keys are split as ``{title}/{rendition}/{file with a segment number}``
  (``/v/c000123/h264-720p/seg-00042.m4s``). Requests are counted per *title* (all renditions
  pooled) and per segment-number bucket (0, 1, 2-3, 4-7, ..., 1024+), decayed with a 36 h half
  life; a global table gives each rendition's share of a bucket. A file's expected count is
  ``title count per segment of its bucket x its rendition's share``: pooling makes a title's
  renditions and neighbouring segments share evidence, so a file nobody has asked for twice yet
  still gets the rate its title and position deserve (viewers abandon: early segments are worth
  more). The file's own decayed count is blended in (1 : 10).
- **Sessions in progress.** A request for segment ``s`` a segment-duration after one for ``s - 1``
  of the same title and rendition continues a *cursor*; cursors that fall silent are dropped.
  A stored segment that a live cursor is heading towards will be asked for in about
  ``(s - position) x segment duration`` with the probability of a viewer getting that far
  (from the title's bucket counts): it adds ``probability / time to arrival`` to its rate. This
  keeps the part of a title just ahead of a viewer who trails another one, and admits the
  leader's misses for the follower. It never fetches anything.

**Admission** compares the miss's rate with a floor: the moving average of the rates of the
objects recently evicted (their popularity part only: a viewer's boost is gone seconds later,
and a floor made of boosts froze admission), decayed like the counts. Only a rate above
``ADMIT_FACTOR`` x floor is stored (hysteresis; most misses, one-hit tail files, cost one rate
evaluation). While the disk has free space, and
until the first evictions have set the floor, everything is admitted; after a restart the
floor is seeded from the restored objects (:meth:`CachePolicy.settle_after_restore`).

**Eviction** takes the lowest rate among ``SAMPLES`` stored objects drawn at random (rates change
with time and sessions, so they are evaluated when needed instead of kept in an ordered index),
least recently requested first at equal rates.

Why this one
------------
Chosen by ``bench/policy_sim.py`` (see docs/benchmarks.md). Byte miss ratio, default seed::

                 1 %     5 %    10 %   (of catalog bytes)
    LRU        0.975   0.871   0.788
    this       0.879   0.755   0.676   -9.8 % / -13.3 % / -14.2 % against LRU
    Oracle-6h  0.851   0.689   0.645   (offline: knows the next 6 h of request counts)
    Belady     0.804   0.630   0.541   (offline)

Seeds 1-3 at 5 %: -13.6 %, -11.0 %, -10.0 % (the previous policy: -11.1, -8.6, -7.6 %). It writes
0.12 bytes per byte requested at 5 % (LRU 0.87), costs ~16 us per request in the simulator and
~245 bytes of heap per stored object. The issue's 20 % at 5 % is not reached.

Memory and bounds
-----------------
- Per stored object: a slotted record (size, own count, last access, title, rendition, segment,
  slot) and a slot in the sampling array.
- Titles remembered: ``max_titles`` (least recently requested dropped first), each a 12-bucket
  array and at most ``MAX_CURSORS`` cursors; renditions: at most ``MAX_RENDITIONS``.
- The :class:`FrequencySketch` of own counts: ``4 * width`` bytes, ~4 MiB per TiB of budget.

Persisted state (``export_state``): ``(own count, last access)``. :meth:`CachePolicy.restore`
puts each object back and re-adds its count to its title, so popular titles stay protected.
"""

from __future__ import annotations

import math
import random
import re
import sys
from array import array
from collections import OrderedDict
from collections.abc import Callable

COUNTER_MAX = 15
"""Sketch counters saturate here: past 15 recent requests an object is simply 'hot'."""

HALF_LIFE_S = 36 * 3600.0
"""Request counts (per object, title and rendition) halve every 36 h."""

PRIOR_WEIGHT = 10.0
"""Weight of the title-and-position estimate against the object's own count."""

ADMIT_FACTOR = 1.7
"""A miss is stored only if its rate is this many times the recent victims' (the floor)."""

FLOOR_ALPHA = 0.05
"""Weight of each new victim in the moving average that is the admission floor."""
FLOOR_SEED_DRAWS = 8
"""After a restart, the floor starts as the mean rate of this many sampled would-be victims..."""
FLOOR_SEED_FULL = 0.9
"""...when the restored objects fill at least this share of the budget (else misses are admitted
into the free space anyway)."""

SAMPLES = 16
"""Stored objects drawn per eviction; the lowest rate among them goes."""

MAX_CURSORS = 16
"""Viewing sessions tracked per title (the stalest is dropped beyond)."""

MAX_RENDITIONS = 64
"""Renditions with their own share table; further ones count as unstructured keys."""

_BUCKETS = 12  # segment-number buckets: 0, 1, 2-3, 4-7, ..., 1024+
_TOP = _BUCKETS - 1
_SEGMENT_NO = re.compile(r"[^./]*?(\d+)(?:\.[^/]*)?")  # digits ending the stem
_RENORMALISE = 32.0  # half-lives after which forward-decayed counts are rebased
_PER_S = math.log(2) / HALF_LIFE_S  # decayed count of a steady rate r is r / _PER_S
_OWN_SHARE = 1.0 / (1.0 + PRIOR_WEIGHT)
_STEP_S = 6.0  # first guess of the segment duration, learnt from cursors afterwards
_STEP_ALPHA = 0.05
_STEP_MIN_S, _STEP_MAX_S = 1.0, 30.0  # HLS/DASH segments are 2-10 s
_WINDOW_STEPS = 2.5  # a cursor silent for this many segment durations has stopped
_HALVE = bytes(i >> 1 for i in range(256))


class FrequencySketch:
    """Approximate recent request counts per key: a count-min sketch with periodic halving.

    Four rows of ``width`` one-byte counters (``4 * width`` bytes, whatever the number of keys),
    counting to 15 with conservative update. After ``sample`` increments every counter is halved
    (an *epoch* passes), so the counts describe the recent past. Keys are hashed with ``hash()``:
    per-process randomised for ``str``, which keeps crafted collisions out; a simulation that
    wants reproducible numbers fixes ``PYTHONHASHSEED``.
    """

    __slots__ = ("_additions", "_mask", "_sample", "_table", "_width", "epochs")

    def __init__(self, width: int, sample: int | None = None) -> None:
        width = 1 << max(4, (max(1, width) - 1).bit_length())
        self._width = width
        self._mask = width - 1
        self._table = bytearray(4 * width)
        self._sample = sample if sample is not None else 10 * width
        self._additions = 0
        self.epochs = 0
        """Number of halvings so far."""

    @property
    def memory_bytes(self) -> int:
        return len(self._table)

    def _index(self, key: str) -> tuple[int, int, int, int]:
        h = hash(key)
        lo = h & 0xFFFFFFFF
        hi = (h >> 32) | 1
        m = self._mask
        w = self._width
        return (
            lo & m,
            ((lo + hi) & m) | w,
            ((lo + 2 * hi) & m) | (w << 1),
            ((lo + 3 * hi) & m) | (3 * w),
        )

    def estimate(self, key: str) -> int:
        t = self._table
        a, b, c, d = self._index(key)
        return min(t[a], t[b], t[c], t[d])

    def increment(self, key: str, count: int = 1) -> int:
        """Count ``count`` more requests of ``key``; returns its new estimate."""
        t = self._table
        a, b, c, d = self._index(key)
        old = min(t[a], t[b], t[c], t[d])
        new = min(COUNTER_MAX, old + count)
        if new == old:
            return old
        self._raise(a, b, c, d, new)
        self._additions += new - old
        if self._additions >= self._sample:
            self._table = t.translate(_HALVE)
            self._additions //= 2
            self.epochs += 1
        return new

    def raise_to(self, key: str, value: int) -> None:
        """Make the estimate of ``key`` at least ``value`` without advancing the epoch clock
        (re-seeding after a restart)."""
        self._raise(*self._index(key), min(COUNTER_MAX, value))

    def _raise(self, a: int, b: int, c: int, d: int, new: int) -> None:
        # Conservative update: raise only the counters below the new minimum.
        t = self._table
        if t[a] < new:
            t[a] = new
        if t[b] < new:
            t[b] = new
        if t[c] < new:
            t[c] = new
        if t[d] < new:
            t[d] = new


def split_key(key: str) -> tuple[str, int]:
    """``(group, segment number)`` of a cache key.

    The group is the path up to the last ``/`` (title and rendition: ``/v/{id}/{rendition}``),
    the segment number the last run of digits of the file name (``seg-00042.m4s`` -> 42). A key
    without both is a group of its own, segment 0.
    """
    slash = key.rfind("/")
    if slash <= 0:
        return key, 0
    match = _SEGMENT_NO.fullmatch(key, slash + 1)
    if match is None:
        return key, 0
    return key[:slash], int(match.group(1))


def split_title(key: str) -> tuple[str, str, int]:
    """``(title, rendition, segment number)`` of a cache key.

    ``/v/{id}/{rendition}/seg-00042.m4s`` gives ``("/v/{id}", "{rendition}", 42)``. A key without
    that shape is a title of its own with rendition ``""``, segment 0 (or its number).
    """
    group, segment = split_key(key)
    slash = group.rfind("/")
    if group == key or slash <= 0:
        return group, "", segment
    return group[:slash], group[slash + 1 :], segment


def _stored_split(key: str) -> tuple[str, str, int]:
    """:func:`split_title` for an entry that is kept: its title and rendition strings interned,
    so stored objects share them (~120 bytes less per object)."""
    title, rendition, segment = split_title(key)
    return sys.intern(title), sys.intern(rendition), segment


class _Counts:
    """Forward-decayed counts per segment bucket: a request at ``t`` adds
    ``2 ** ((t - base) / H)``, so an update touches one bucket; the decayed count at ``now`` is the
    stored one times ``2 ** ((base - now) / H)``."""

    __slots__ = ("base", "counts")

    def __init__(self, base: float) -> None:
        self.base = base
        self.counts = array("d", bytes(8 * _BUCKETS))

    def add(self, bucket: int, count: float, when: float) -> None:
        age = (when - self.base) / HALF_LIFE_S
        if age > _RENORMALISE:
            scale = math.exp2(-age)
            counts = self.counts
            for i in range(_BUCKETS):
                counts[i] *= scale
            self.base = when
            age = 0.0
        self.counts[bucket] += count * math.exp2(age)


class _Cursor:
    """A viewing session in progress: the last segment it asked for, when, in which rendition."""

    __slots__ = ("last", "position", "rendition")

    def __init__(self, position: int, last: float, rendition: str) -> None:
        self.position = position
        self.last = last
        self.rendition = rendition


class _Title:
    __slots__ = ("cursors", "requests", "top")

    def __init__(self, base: float) -> None:
        self.requests = _Counts(base)
        """All renditions pooled."""
        self.top = 0
        """Highest segment number seen: the end of the last bucket."""
        self.cursors: list[_Cursor] = []

    def per_segment(self, bucket: int) -> float:
        """Stored (not yet decayed) count per segment number of ``bucket``."""
        if bucket == 0:
            return self.requests.counts[0]
        low = 1 << (bucket - 1)
        high = self.top + 1 if bucket == _TOP else min(1 << bucket, self.top + 1)
        return self.requests.counts[bucket] / max(1, high - low)


class _Entry:
    __slots__ = ("last", "own", "rendition", "segment", "size", "slot", "title")

    def __init__(
        self, size: int, own: float, last: float, title: str, rendition: str, segment: int
    ) -> None:
        self.size = size
        self.own = own
        """The object's own request count, decayed to ``last``."""
        self.last = last
        self.title = title
        self.rendition = rendition
        self.segment = segment
        self.slot = 0
        """Index in the sampling array."""


class CachePolicy:
    """Rate-threshold admission + sampled lowest-rate eviction over a byte budget (see module)."""

    def __init__(self, capacity: int, *, sketch_width: int | None = None) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        """Byte budget; may be lowered or raised at run time, the next evict() honours it."""
        width = sketch_width if sketch_width is not None else capacity >> 20
        self._sketch = FrequencySketch(min(max(width, 1 << 12), 1 << 24))
        self.max_titles = max(4096, min(capacity >> 26, 1 << 17))
        """Titles remembered (least recently requested dropped first): one per 64 MiB of budget,
        4 Ki..128 Ki."""
        self._titles: OrderedDict[str, _Title] = OrderedDict()
        # Forward-decayed requests per rendition and bucket, and their total (one time base).
        self._renditions: dict[str, array[float]] = {}
        self._share_total = array("d", bytes(8 * _BUCKETS))
        self._share_base = 0.0
        self._entries: dict[str, _Entry] = {}
        self._keys: list[str] = []  # stored keys, for sampling; _Entry.slot indexes it
        self._used = 0
        self._floor = 0.0
        self._floor_at = 0.0
        self._step = _STEP_S
        self._random = random.Random(0x5EED).random
        self.listener: Callable[[str, int, int], None] | None = None
        """Told (key, size, +1) when an object enters and (key, size, -1) when it leaves."""

    # ------------------------------------------------------------------ queries

    @property
    def used(self) -> int:
        return self._used

    @property
    def sketch_bytes(self) -> int:
        return self._sketch.memory_bytes

    def floor_at(self, now: float) -> float:
        """Admission floor: moving average of the rates (requests/s) of recent victims, without
        session boosts, decayed to ``now`` like the counts it was computed from."""
        if now <= self._floor_at:
            return self._floor
        return self._floor * math.exp2((self._floor_at - now) / HALF_LIFE_S)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def size_of(self, key: str) -> int:
        """Bytes of a stored object (0 when not stored)."""
        entry = self._entries.get(key)
        return entry.size if entry is not None else 0

    def export_state(self, key: str) -> tuple[int, float]:
        """``(own request count, last access)`` of a stored object, to persist with it."""
        entry = self._entries[key]
        return max(1, round(entry.own)), entry.last

    def rate(self, key: str, now: float) -> float:
        """Estimated requests per second of ``key`` at ``now`` (stored or not)."""
        entry = self._entries.get(key)
        if entry is not None:
            return self._rate(
                entry.own, entry.last, entry.title, entry.rendition, entry.segment, now
            )
        title, rendition, segment = split_title(key)
        own = float(self._sketch.estimate(key))
        return self._rate(own, now, title, rendition, segment, now)

    # ------------------------------------------------------------------ events

    def admit(self, key: str, size: int, now: float) -> bool:
        """Count this miss; True if the object should be stored (see the module docstring)."""
        own = self._sketch.increment(key)
        title, rendition, segment = split_title(key)
        self._count(title, rendition, segment, 1, now, follow=True)
        if size > self.capacity:
            return False
        if self._used + size <= self.capacity:
            return True
        rate = self._rate(float(own), now, title, rendition, segment, now)
        return rate >= ADMIT_FACTOR * self.floor_at(now)

    def on_insert(self, key: str, size: int, now: float) -> None:
        self.on_remove(key)
        title, rendition, segment = _stored_split(key)
        # The miss was counted by admit(), however many other fills finished in between.
        own = float(self._sketch.estimate(key))
        self._add(key, _Entry(size, own, now, title, rendition, segment))

    def on_hit(self, key: str, now: float, count: int = 1) -> None:
        self._sketch.increment(key, count)
        entry = self._entries.get(key)
        if entry is None:
            return
        self._count(entry.title, entry.rendition, entry.segment, count, now, follow=True)
        if now > entry.last:  # batched hits may arrive late: never move last access back
            entry.own *= math.exp2((entry.last - now) / HALF_LIFE_S)
            entry.last = now
        entry.own += count

    def on_remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._used -= entry.size
        keys = self._keys
        moved = keys.pop()
        if moved != key:
            keys[entry.slot] = moved
            self._entries[moved].slot = entry.slot
        if self.listener is not None:
            self.listener(key, entry.size, -1)

    def evict(self, now: float, target: int | None = None) -> list[str]:
        """Remove objects, lowest rate first (sampled), until ``used <= min(target, capacity)``."""
        limit = self.capacity if target is None else min(target, self.capacity)
        victims: list[str] = []
        while self._used > limit:
            key = self._lowest(now)
            e = self._entries[key]
            # The floor remembers what victims were worth without the viewers in progress: a
            # session's boost is gone a few segment durations later, and a floor built from it
            # stayed far above every rate, so nothing was admitted and nothing evicted again.
            rate = self._rate(e.own, e.last, e.title, e.rendition, e.segment, now, False)
            floor = self.floor_at(now)
            self._floor, self._floor_at = floor + FLOOR_ALPHA * (rate - floor), now
            self.on_remove(key)
            victims.append(key)
        return victims

    def settle_after_restore(self, now: float) -> None:
        """Set the admission floor from what is stored, once everything is restored.

        The floor is learnt from victims; after a restart there were none yet, so every miss
        was admitted until enough evictions had set it again (one-hit files flushed the rates'
        best objects each restart). A nearly full cache starts with the floor its next
        victims would give: the mean rate of ``FLOOR_SEED_DRAWS`` sampled lowest-rate objects.
        """
        if not self._entries or self._used < FLOOR_SEED_FULL * self.capacity:
            return
        entries = self._entries
        total = 0.0
        for _ in range(FLOOR_SEED_DRAWS):
            e = entries[self._lowest(now)]
            total += self._rate(e.own, e.last, e.title, e.rendition, e.segment, now, False)
        self._floor, self._floor_at = total / FLOOR_SEED_DRAWS, now

    def restore(self, key: str, size: int, state: tuple[int, float], now: float) -> None:
        """Re-create a stored object after a restart from its exported state (any order)."""
        if key in self._entries:  # restored twice or already live: keep the first
            return
        own, last = state
        own = min(max(1, own), COUNTER_MAX)
        title, rendition, segment = _stored_split(key)
        self._sketch.raise_to(key, own)
        self._count(title, rendition, segment, own, last, follow=False)
        self._add(key, _Entry(size, float(own), last, title, rendition, segment))

    # ------------------------------------------------------------------ internals

    def _add(self, key: str, entry: _Entry) -> None:
        entry.slot = len(self._keys)
        self._keys.append(key)
        self._entries[key] = entry
        self._used += entry.size
        if self.listener is not None:
            self.listener(key, entry.size, 1)

    def _count(
        self, title: str, rendition: str, segment: int, count: float, when: float, *, follow: bool
    ) -> None:
        titles = self._titles
        record = titles.get(title)
        if record is None:
            record = titles[sys.intern(title)] = _Title(when)
            if len(titles) > self.max_titles:
                titles.popitem(last=False)
        else:
            titles.move_to_end(title)
        bucket = min(segment.bit_length(), _TOP)
        record.requests.add(bucket, count, when)
        if segment > record.top:
            record.top = segment
        if rendition:
            self._count_rendition(rendition, bucket, count, when)
        if follow:
            self._follow(record, rendition, segment, when)

    def _count_rendition(self, rendition: str, bucket: int, count: float, when: float) -> None:
        shares = self._renditions.get(rendition)
        if shares is None:
            if len(self._renditions) >= MAX_RENDITIONS:
                return
            shares = self._renditions[rendition] = array("d", bytes(8 * _BUCKETS))
        age = (when - self._share_base) / HALF_LIFE_S
        if age > _RENORMALISE:  # rebase every table together: shares are ratios
            scale = math.exp2(-age)
            for table in (self._share_total, *self._renditions.values()):
                for i in range(_BUCKETS):
                    table[i] *= scale
            self._share_base = when
            age = 0.0
        weight = count * math.exp2(age)
        shares[bucket] += weight
        self._share_total[bucket] += weight

    def _follow(self, record: _Title, rendition: str, segment: int, now: float) -> None:
        """Advance the session that asked for ``segment - 1`` one duration ago, or start one."""
        window = _WINDOW_STEPS * self._step
        cursors = record.cursors
        for cursor in cursors:
            if (
                cursor.position == segment - 1
                and cursor.rendition == rendition
                and 0.0 <= now - cursor.last <= window
            ):
                # Clamped: the daemon reports hits in once-a-second batches, so steps of 0 s
                # (and multiples of 1 s) happen, and a collapsing duration would inflate the
                # rates of every segment ahead of a cursor.
                step = self._step + _STEP_ALPHA * (now - cursor.last - self._step)
                self._step = min(_STEP_MAX_S, max(_STEP_MIN_S, step))
                cursor.position = segment
                cursor.last = now
                return
        live = [c for c in cursors if now - c.last <= window]
        live.append(_Cursor(segment, now, rendition))
        if len(live) > MAX_CURSORS:
            del live[0]
        record.cursors = live

    def _rate(
        self,
        own: float,
        last: float,
        title: str,
        rendition: str,
        segment: int,
        now: float,
        sessions: bool = True,
    ) -> float:
        if now > last:
            own *= math.exp2((last - now) / HALF_LIFE_S)
        record = self._titles.get(title)
        if record is None:
            return own * _OWN_SHARE * _PER_S
        bucket = min(segment.bit_length(), _TOP)
        here = record.per_segment(bucket)
        shared = here * math.exp2((record.requests.base - now) / HALF_LIFE_S)
        if rendition:
            total = self._share_total[bucket]
            shares = self._renditions.get(rendition)
            if shares is not None:
                shared *= shares[bucket] / total if total > 0.0 else 0.0
            elif len(self._renditions) < MAX_RENDITIONS:  # never requested: no share yet
                shared = 0.0
        rate = (own + PRIOR_WEIGHT * shared) * _OWN_SHARE * _PER_S
        if sessions and record.cursors and here > 0.0:
            step = self._step
            window = _WINDOW_STEPS * step
            for cursor in record.cursors:
                position = cursor.position
                if position < segment and cursor.rendition == rendition:
                    since = now - cursor.last
                    if since <= window:
                        at = record.per_segment(min(position.bit_length(), _TOP))
                        reach = min(1.0, here / at) if at > 0.0 else 1.0
                        rate += reach / max(step, (segment - position) * step - since)
        return rate

    def _lowest(self, now: float) -> str:
        """The stored object of lowest rate among ``SAMPLES`` drawn at random (all when fewer);
        the least recently requested at equal rates."""
        keys = self._keys
        entries = self._entries
        n = len(keys)
        if n <= SAMPLES:
            drawn = keys
        else:
            rnd = self._random
            drawn = [keys[int(rnd() * n)] for _ in range(SAMPLES)]
        best: tuple[float, float, str] | None = None
        for key in drawn:
            e = entries[key]
            item = (self._rate(e.own, e.last, e.title, e.rendition, e.segment, now), e.last, key)
            if best is None or item < best:
                best = item
        assert best is not None  # used > limit >= 0 means something is stored
        return best[2]
