"""Cache admission and eviction for one (worker, disk) shard.  DOCSTRING TO BE WRITTEN."""

from __future__ import annotations

from collections import OrderedDict

_COUNTER_MAX = 15
_HALVE = bytes(i >> 1 for i in range(256))


class FrequencySketch:
    """Approximate recent request counts per key: a count-min sketch with periodic halving.

    Four rows of ``width`` one-byte counters (``4 * width`` bytes, whatever the number of keys),
    counting to 15 with conservative update. After ``sample`` increments every counter is halved,
    so the counts describe the recent past and a title whose audience has moved on loses its
    weight. Hashes are xxh3-64 with a fixed seed, so a run is reproducible.
    """

    __slots__ = ("_additions", "_mask", "_sample", "_seed", "_table", "_width")

    def __init__(self, width: int, sample: int | None = None, seed: int = 0) -> None:
        width = 1 << max(4, (max(1, width) - 1).bit_length())
        self._width = width
        self._mask = width - 1
        self._table = bytearray(4 * width)
        self._sample = sample if sample is not None else 10 * width
        self._additions = 0
        self._seed = seed

    @property
    def memory_bytes(self) -> int:
        return len(self._table)

    def hash(self, key: str) -> int:
        return hash(key)

    def estimate(self, h: int) -> int:
        t = self._table
        m = self._mask
        w = self._width
        lo = h & 0xFFFFFFFF
        hi = (h >> 32) | 1
        return min(
            t[lo & m],
            t[((lo + hi) & m) | w],
            t[((lo + 2 * hi) & m) | (w << 1)],
            t[((lo + 3 * hi) & m) | (3 * w)],
        )

    def increment(self, h: int, count: int = 1) -> int:
        """Count ``count`` more requests of the key hashed to ``h``; returns the new estimate."""
        t = self._table
        m = self._mask
        w = self._width
        lo = h & 0xFFFFFFFF
        hi = (h >> 32) | 1
        a = lo & m
        b = ((lo + hi) & m) | w
        c = ((lo + 2 * hi) & m) | (w << 1)
        d = ((lo + 3 * hi) & m) | (3 * w)
        old = min(t[a], t[b], t[c], t[d])
        if old >= _COUNTER_MAX:
            return old
        new = old + count if old + count < _COUNTER_MAX else _COUNTER_MAX
        # Conservative update: raise only the counters below the new minimum.
        if t[a] < new:
            t[a] = new
        if t[b] < new:
            t[b] = new
        if t[c] < new:
            t[c] = new
        if t[d] < new:
            t[d] = new
        self._additions += new - old
        if self._additions >= self._sample:
            self._table = t.translate(_HALVE)
            self._additions //= 2
        return new


class _Entry:
    __slots__ = ("hits", "last", "size")

    def __init__(self, size: int, hits: int, last: float) -> None:
        self.size = size
        self.hits = hits
        self.last = last


class CachePolicy:
    """TinyLFU admission at the door + segmented LRU eviction, byte-budgeted (draft)."""

    PROTECTED_SHARE = 0.8
    MAX_VICTIMS = 8

    def __init__(self, capacity: int, *, sketch_width: int | None = None, seed: int = 0) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = capacity
        self._probation: OrderedDict[str, _Entry] = OrderedDict()
        self._protected: OrderedDict[str, _Entry] = OrderedDict()
        self._protected_bytes = 0
        self._used = 0
        width = sketch_width if sketch_width is not None else capacity >> 20
        self._sketch = FrequencySketch(min(max(width, 1024), 1 << 24), seed=seed)
        self._pending: list[tuple[float, int, str, _Entry]] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if value < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = value

    @property
    def used(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected) + len(self._pending)

    def __contains__(self, key: object) -> bool:
        if self._pending:
            self._settle()
        return key in self._probation or key in self._protected

    def admit(self, key: str, size: int, now: float) -> bool:
        sketch = self._sketch
        freq = sketch.increment(sketch.hash(key))
        if size > self._capacity:
            return False
        need = self._used + size - self._capacity
        if need <= 0:
            return True
        if self._pending:
            self._settle()
        n = 0
        for victims in (self._probation, self._protected):
            for vkey, entry in victims.items():
                if sketch.estimate(sketch.hash(vkey)) >= freq:
                    return False
                need -= entry.size
                n += 1
                if need <= 0:
                    return True
                if n >= self.MAX_VICTIMS:
                    return False
        return True

    def on_insert(self, key: str, size: int, now: float) -> None:
        if self._pending:
            self._settle()
        self.on_remove(key)
        self._probation[key] = _Entry(size, 1, now)
        self._used += size

    def on_hit(self, key: str, now: float, count: int = 1) -> None:
        if self._pending:
            self._settle()
        entry = self._probation.pop(key, None)
        if entry is not None:
            self._protected[key] = entry
            self._protected_bytes += entry.size
            self._rebalance()
        else:
            entry = self._protected.get(key)
            if entry is None:
                return
            self._protected.move_to_end(key)
        entry.hits += count
        entry.last = now
        self._sketch.increment(self._sketch.hash(key), count)

    def _rebalance(self) -> None:
        budget = int(self._capacity * self.PROTECTED_SHARE)
        protected = self._protected
        while self._protected_bytes > budget and len(protected) > 1:
            key, entry = protected.popitem(last=False)
            self._protected_bytes -= entry.size
            self._probation[key] = entry

    def on_remove(self, key: str) -> None:
        if self._pending:
            self._settle()
        entry = self._probation.pop(key, None)
        if entry is None:
            entry = self._protected.pop(key, None)
            if entry is None:
                return
            self._protected_bytes -= entry.size
        self._used -= entry.size

    def evict(self, now: float, target: int | None = None) -> list[str]:
        if self._pending:
            self._settle()
        limit = self._capacity if target is None else min(target, self._capacity)
        out: list[str] = []
        while self._used > limit:
            if self._probation:
                key, entry = self._probation.popitem(last=False)
            else:
                key, entry = self._protected.popitem(last=False)
                self._protected_bytes -= entry.size
            self._used -= entry.size
            out.append(key)
        return out

    def export_state(self, key: str) -> tuple[int, float]:
        if self._pending:
            self._settle()
        entry = self._probation.get(key) or self._protected.get(key)
        if entry is None:
            raise KeyError(key)
        return entry.hits, entry.last

    def restore(self, key: str, size: int, state: tuple[int, float], now: float) -> None:
        hits, last = state
        self._pending.append((last, hits, key, _Entry(size, max(1, hits), last)))
        self._used += size

    def _settle(self) -> None:
        pending = self._pending
        self._pending = []
        pending.sort(key=lambda p: p[0])
        sketch = self._sketch
        for _, hits, key, entry in pending:
            sketch.increment(sketch.hash(key), min(hits, _COUNTER_MAX))
            if hits >= 2:
                self._protected[key] = entry
                self._protected_bytes += entry.size
            else:
                self._probation[key] = entry
        self._rebalance()
