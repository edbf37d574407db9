from __future__ import annotations

import heapq
import math
import re
from array import array
from collections import OrderedDict
from collections.abc import Callable

COUNTER_MAX = 15
"""Sketch counters saturate here: past 15 recent requests an object is simply 'hot'."""

HALF_LIFE_S = 36 * 3600.0
"""Request counts (per object and per group) halve every 36 h: long enough to learn a steady
catalog, short enough for a release to lose its place within about a day of its peak."""

GROUP_WEIGHT = 3.0
"""Weight of the group estimate against the object's own count in an object's value."""

ADMIT_MARGIN = 0.2
"""Log2 margin a candidate's priority must beat the victims' by (x1.15): hysteresis, so that
equally cold objects do not churn the disk."""

_BUCKETS = 12  # segment-number buckets per group: 0, 1, 2-3, 4-7, ..., 1024+
_SEGMENT_NO = re.compile(r"[^./]*?(\d+)(?:\.[^/]*)?")  # digits ending the stem
_RENORMALISE = 32.0  # half-lives after which a group's scaled counts are rebased
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


def _bucket(segment: int) -> int:
    return min(segment.bit_length(), _BUCKETS - 1)


class _Group:
    """Decayed request counts of one group per segment-number bucket.

    Counts are kept *forward-decayed*: a request at ``t`` adds ``2 ** ((t - base) / H)``, so an
    update touches one bucket, and the decayed count at ``now`` is the stored one times
    ``2 ** (-(now - base) / H)``.
    """

    __slots__ = ("base", "counts", "top")

    def __init__(self, base: float) -> None:
        self.base = base
        self.counts = array("d", bytes(8 * _BUCKETS))
        self.top = 0
        """Highest segment number seen: the end of the last bucket."""

    def add(self, segment: int, count: float, when: float) -> None:
        age = (when - self.base) / HALF_LIFE_S
        if age > _RENORMALISE:
            scale = math.exp2(-age)
            counts = self.counts
            for i in range(_BUCKETS):
                counts[i] *= scale
            self.base = when
            age = 0.0
        self.counts[_bucket(segment)] += count * math.exp2(age)
        if segment > self.top:
            self.top = segment

    def per_object(self, segment: int, now: float) -> float:
        """Decayed requests per object of the bucket holding ``segment``."""
        b = _bucket(segment)
        low = 0 if b == 0 else 1 << (b - 1)
        high = 1 if b == 0 else min(1 << b, self.top + 1)
        if b == _BUCKETS - 1:
            high = self.top + 1
        return self.counts[b] * math.exp2((self.base - now) / HALF_LIFE_S) / max(1, high - low)


class _Entry:
    __slots__ = ("group", "last", "own", "priority", "segment", "seq", "size")

    def __init__(self, size: int, own: float, last: float, group: str, segment: int) -> None:
        self.size = size
        self.own = own
        """The object's own request count, decayed to ``last``."""
        self.last = last
        self.group = group
        self.segment = segment
        self.priority = 0.0
        self.seq = 0
        """Matches the live heap item; older items of this key are skipped."""


class CachePolicy:
    """Group-aware value admission + lowest-value eviction over a byte budget (see module)."""

    MAX_VICTIMS = 8
    """Victims ``admit`` weighs against a candidate; needing more rejects it (bounds the work)."""

    def __init__(self, capacity: int, *, sketch_width: int | None = None) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        """Byte budget; may be lowered or raised at run time, the next evict() honours it."""
        width = sketch_width if sketch_width is not None else capacity >> 20
        self._sketch = FrequencySketch(min(max(width, 1 << 12), 1 << 24))
        self.max_groups = max(4096, min(capacity >> 26, 1 << 17))
        """Groups remembered (least recently requested dropped first): one per 64 MiB of budget,
        4 Ki..128 Ki."""
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []  # (priority, seq, key); stale items skipped
        self._seq = 0
        self._used = 0
        self.listener: Callable[[str, int, int], None] | None = None
        """Told (key, size, +1) when an object enters and (key, size, -1) when it leaves."""

    # ------------------------------------------------------------------ queries

    @property
    def used(self) -> int:
        return self._used

    @property
    def sketch_bytes(self) -> int:
        return self._sketch.memory_bytes

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

    def value(self, key: str, now: float) -> float:
        """Estimated decayed requests per object of ``key`` at ``now`` (stored or not)."""
        entry = self._entries.get(key)
        if entry is not None:
            return self._value(entry.own, entry.last, entry.group, entry.segment, now)
        group, segment = split_key(key)
        return self._value(float(self._sketch.estimate(key)), now, group, segment, now)

    # ------------------------------------------------------------------ events

    def admit(self, key: str, size: int, now: float) -> bool:
        """Count this miss; True if the object should be stored (see the module docstring)."""
        own = self._sketch.increment(key)
        group, segment = split_key(key)
        self._count(group, segment, 1, now)
        if size > self.capacity:
            return False
        need = self._used + size - self.capacity
        if need <= 0:
            return True
        bar = self._priority(self._value(float(own), now, group, segment, now), now)
        bar -= ADMIT_MARGIN
        examined: list[tuple[str, _Entry]] = []
        admitted = True
        while need > 0:
            lowest = self._pop_lowest(now, refresh=len(examined) < 4)
            if lowest is None:
                break
            examined.append(lowest)
            if lowest[1].priority >= bar or len(examined) > self.MAX_VICTIMS:
                admitted = False
                break
            need -= lowest[1].size
        for victim, entry in examined:
            self._push(victim, entry)
        return admitted

    def on_insert(self, key: str, size: int, now: float) -> None:
        self.on_remove(key)
        group, segment = split_key(key)
        # The miss was counted by admit(), however many other fills finished in between.
        entry = _Entry(size, float(self._sketch.estimate(key)), now, group, segment)
        self._entries[key] = entry
        self._used += size
        if self.listener is not None:
            self.listener(key, size, 1)
        self._reprioritise(key, entry, now)

    def on_hit(self, key: str, now: float, count: int = 1) -> None:
        self._sketch.increment(key, count)
        entry = self._entries.get(key)
        if entry is None:
            return
        self._count(entry.group, entry.segment, count, now)
        if now > entry.last:  # batched hits may arrive late: never move last access back
            entry.own *= math.exp2((entry.last - now) / HALF_LIFE_S)
            entry.last = now
        entry.own += count
        self._reprioritise(key, entry, entry.last)

    def on_remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._used -= entry.size
            if self.listener is not None:
                self.listener(key, entry.size, -1)

    def evict(self, now: float, target: int | None = None) -> list[str]:
        """Remove objects, least valuable first, until ``used <= min(target, capacity)``."""
        limit = self.capacity if target is None else min(target, self.capacity)
        victims: list[str] = []
        refreshes = 16
        while self._used > limit:
            lowest = self._pop_lowest(now, refresh=refreshes > 0)
            if lowest is None:  # unreachable: used > 0 means a live heap item
                break
            refreshes -= 1
            key, entry = lowest
            del self._entries[key]
            self._used -= entry.size
            if self.listener is not None:
                self.listener(key, entry.size, -1)
            victims.append(key)
        return victims

    def restore(self, key: str, size: int, state: tuple[int, float], now: float) -> None:
        """Re-create a stored object after a restart from its exported state (any order)."""
        if key in self._entries:  # restored twice or already live: keep the first
            return
        own, last = state
        own = min(max(1, own), COUNTER_MAX)
        group, segment = split_key(key)
        self._sketch.raise_to(key, own)
        self._count(group, segment, own, last)
        entry = _Entry(size, float(own), last, group, segment)
        self._entries[key] = entry
        self._used += size
        if self.listener is not None:
            self.listener(key, size, 1)
        self._reprioritise(key, entry, last)

    # ------------------------------------------------------------------ internals

    def _count(self, group: str, segment: int, count: float, when: float) -> None:
        groups = self._groups
        record = groups.get(group)
        if record is None:
            record = groups[group] = _Group(when)
            if len(groups) > self.max_groups:
                groups.popitem(last=False)
        else:
            groups.move_to_end(group)
        record.add(segment, count, when)

    def _value(self, own: float, last: float, group: str, segment: int, now: float) -> float:
        if now > last:
            own *= math.exp2((last - now) / HALF_LIFE_S)
        record = self._groups.get(group)
        shared = record.per_object(segment, now) if record is not None else 0.0
        return (own + GROUP_WEIGHT * shared) / (1.0 + GROUP_WEIGHT)

    @staticmethod
    def _priority(value: float, now: float) -> float:
        # log2 of the value forward-decayed to time 0: comparable across objects and times.
        return math.log2(max(value, 1e-6)) + now / HALF_LIFE_S

    def _reprioritise(self, key: str, entry: _Entry, now: float) -> None:
        value = self._value(entry.own, entry.last, entry.group, entry.segment, now)
        entry.priority = self._priority(value, now)
        self._push(key, entry)

    def _push(self, key: str, entry: _Entry) -> None:
        self._seq += 1
        entry.seq = self._seq
        heap = self._heap
        heapq.heappush(heap, (entry.priority, self._seq, key))
        if len(heap) > 2 * len(self._entries) + 1024:  # drop stale items: amortised O(1)
            self._heap = [(e.priority, e.seq, k) for k, e in self._entries.items()]
            heapq.heapify(self._heap)

    def _pop_lowest(self, now: float, *, refresh: bool) -> tuple[str, _Entry] | None:
        """Pop the live object of lowest priority. With ``refresh``, an object whose group has
        gained requests since its priority was set is re-queued at its current priority first
        (its value can only have risen): a segment of a title that is being watched again."""
        heap = self._heap
        entries = self._entries
        while heap:
            priority, seq, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is None or entry.seq != seq:
                continue
            if refresh:
                current = self._priority(
                    self._value(entry.own, entry.last, entry.group, entry.segment, now), now
                )
                if current > priority + 0.1:
                    refresh = False
                    entry.priority = current
                    self._push(key, entry)
                    continue
            return key, entry
        return None
