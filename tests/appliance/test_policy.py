"""appliance.policy: byte budget, admission against one-hit scans, restart, and the simulation."""

from __future__ import annotations

import random

import pytest

from appliance.policy import COUNTER_MAX, CachePolicy, FrequencySketch
from bench.policy_sim import Lru, simulate
from bench.vod_trace import TraceConfig, describe, generate

MB = 1_000_000


def request(policy: CachePolicy, key: str, size: int, now: float) -> bool:
    """Drive one request the way the daemon does; True on a hit."""
    if key in policy:
        policy.on_hit(key, now)
        return True
    if policy.admit(key, size, now):
        policy.on_insert(key, size, now)
        policy.evict(now)
    return False


def popular_then_scan(policy: CachePolicy, popular: list[str], scan: int) -> int:
    """Request each popular key 5 times, then ``scan`` one-hit keys; returns scan keys stored."""
    now = 0.0
    for _ in range(5):
        for key in popular:
            now += 1
            request(policy, key, MB, now)
    stored = 0
    for i in range(scan):
        now += 1
        key = f"/v/scan/h264-1080p/seg-{i:05d}.m4s"
        request(policy, key, MB, now)
        stored += key in policy
    return stored


def test_used_never_exceeds_capacity_after_evict() -> None:
    rng = random.Random(7)
    policy = CachePolicy(200 * MB)
    sizes: dict[str, int] = {}
    now = 0.0
    for step in range(20_000):
        now += 0.5
        key = f"/v/t{rng.randrange(60)}/h264-720p/seg-{int(rng.paretovariate(1.1)) % 400:05d}.m4s"
        size = sizes.setdefault(key, rng.randint(MB // 3, 20 * MB))
        action = rng.random()
        if action < 0.02:
            policy.on_remove(key)
        elif action < 0.03:
            policy.capacity = rng.choice((50, 120, 200)) * MB
        elif key in policy:
            policy.on_hit(key, now, count=rng.choice((1, 1, 3)))
        elif policy.admit(key, size, now):
            policy.on_insert(key, size, now)
        if step % 7 == 0:  # the daemon evicts often, with small overshoot
            victims = policy.evict(now)
            assert policy.used <= policy.capacity
            assert not any(v in policy for v in victims)
        live = [k for k in sizes if k in policy]
        assert policy.used == sum(sizes[k] for k in live)
        assert len(policy) == len(live)


def test_evict_to_target_below_capacity() -> None:
    policy = CachePolicy(10 * MB)
    for i in range(10):
        policy.on_insert(f"k{i}", MB, float(i))
    victims = policy.evict(20.0, target=6 * MB)
    assert victims == ["k0", "k1", "k2", "k3"]  # least recently used first at equal frequency
    assert policy.used == 6 * MB
    assert policy.evict(21.0, target=50 * MB) == []  # never above capacity anyway


def test_admission_keeps_popular_set_through_one_hit_scan() -> None:
    policy = CachePolicy(100 * MB)
    popular = [f"/v/hit/h264-1080p/seg-{i:05d}.m4s" for i in range(60)]
    stored = popular_then_scan(policy, popular, scan=20_000)
    assert all(key in policy for key in popular)
    # Besides what fit in the free space, only sketch collisions (a one-hit key estimated at 2)
    # get in, and they replace other cold objects, never the popular ones.
    assert stored < 20_000 // 50
    assert policy.used <= policy.capacity


def test_lru_would_have_flushed_the_popular_set() -> None:
    """The scenario above is a real threat: without admission the scan flushes everything."""
    lru = Lru(100 * MB)
    for _ in range(5):
        for i in range(60):
            key = f"/v/hit/h264-1080p/seg-{i:05d}.m4s"
            if key in lru:
                lru.on_hit(key, 0.0)
            else:
                lru.on_insert(key, MB, 0.0)
                lru.evict(0.0)
    for i in range(200):
        lru.on_insert(f"/v/scan/seg-{i}", MB, 0.0)
        lru.evict(0.0)
    assert not any(f"/v/hit/h264-1080p/seg-{i:05d}.m4s" in lru for i in range(60))


def test_hits_after_a_scan_still_promote_new_popular_objects() -> None:
    policy = CachePolicy(20 * MB)
    for i in range(60):  # one-hit titles: fill the cache, then evict some (sets the floor)
        request(policy, f"/v/old{i}/h264-1080p/seg-00000.m4s", MB, float(i))
    assert policy.floor_at(60.0) > 0.0
    newcomer = "/v/new/h264-1080p/seg-00000.m4s"
    assert not request(policy, newcomer, MB, 100.0)
    assert newcomer not in policy  # one request does not beat the cold residents
    assert not request(policy, newcomer, MB, 101.0)
    assert newcomer in policy  # the second one does
    assert request(policy, newcomer, MB, 102.0)


def test_restore_reproduces_protection_of_popular_objects() -> None:
    before = CachePolicy(100 * MB)
    popular = [f"/v/hit/h264-1080p/seg-{i:05d}.m4s" for i in range(60)]
    popular_then_scan(before, popular, scan=40)  # fills the disk: 60 popular + 40 cold
    stored = [f"/v/scan/h264-1080p/seg-{i:05d}.m4s" for i in range(40)]
    states = {key: before.export_state(key) for key in popular + stored}
    assert all(states[k][0] > states[s][0] for k in popular for s in stored)

    after = CachePolicy(100 * MB)
    items = list(states.items())
    random.Random(3).shuffle(items)
    for key, state in items:
        after.restore(key, MB, state, 1_000.0)
    assert len(after) == 100
    assert after.used == 100 * MB
    assert {k: after.export_state(k) for k in states} == states

    # Making room evicts cold objects only, never a popular one.
    victims = after.evict(1_500.0, target=90 * MB)
    assert len(victims) == 10 and set(victims) <= set(stored)

    stored_scan = 0
    for i in range(5_000):
        key = f"/v/scan2/h264-1080p/seg-{i:05d}.m4s"
        request(after, key, MB, 2_000.0 + i)
        stored_scan += key in after
    assert all(key in after for key in popular)
    assert stored_scan < 5_000 // 50


def test_restore_twice_and_restore_over_live_key_count_once() -> None:
    policy = CachePolicy(10 * MB)
    policy.on_insert("a", MB, 1.0)
    policy.restore("a", MB, (3, 0.5), 2.0)
    policy.restore("b", 2 * MB, (1, 0.5), 2.0)
    policy.restore("b", 2 * MB, (1, 0.6), 2.0)
    assert len(policy) == 2
    assert policy.used == 3 * MB
    assert policy.export_state("b") == (1, 0.5)


def test_remove_and_unknown_keys() -> None:
    policy = CachePolicy(10 * MB)
    policy.on_hit("missing", 1.0)
    policy.on_hit("missing", 1.0, count=5)
    policy.on_remove("missing")
    assert len(policy) == 0 and policy.used == 0
    with pytest.raises(KeyError):
        policy.export_state("missing")

    policy.on_insert("a", 3 * MB, 1.0)
    policy.on_insert("b", 2 * MB, 1.0)
    policy.on_remove("a")
    policy.on_remove("a")
    assert "a" not in policy and "b" in policy
    assert len(policy) == 1 and policy.used == 2 * MB
    policy.on_insert("b", 4 * MB, 2.0)  # re-stored with a new size
    assert len(policy) == 1 and policy.used == 4 * MB
    assert policy.evict(3.0) == []


def test_oversized_object_is_never_admitted() -> None:
    policy = CachePolicy(5 * MB)
    assert not policy.admit("big", 6 * MB, 0.0)
    assert policy.admit("small", 5 * MB, 0.0)


def test_batched_hits_count_like_single_hits() -> None:
    one, batched = CachePolicy(10 * MB), CachePolicy(10 * MB)
    for policy in (one, batched):
        policy.on_insert("k", MB, 0.0)
    for t in range(4):
        one.on_hit("k", float(t))
    batched.on_hit("k", 3.0, count=4)
    assert one.export_state("k") == batched.export_state("k") == (4, 3.0)


def test_sketch_counts_saturate_and_halve() -> None:
    sketch = FrequencySketch(width=1024, sample=100)
    assert sketch.memory_bytes == 4 * 1024
    assert sketch.increment("a", 40) == COUNTER_MAX
    for i in range(100):
        sketch.increment(f"other-{i}")
    assert sketch.epochs >= 1
    assert sketch.estimate("a") <= COUNTER_MAX // 2
    assert sketch.estimate("never-seen") <= 1
    sketch.raise_to("b", 6)
    assert sketch.estimate("b") >= 6


def test_sketch_memory_is_bounded_by_capacity() -> None:
    assert CachePolicy(1 << 40).sketch_bytes == 4 << 20  # 1 TiB budget: 4 MiB of history
    assert CachePolicy(1 << 50).sketch_bytes == 64 << 20  # clamped
    assert CachePolicy(0).sketch_bytes == 16 << 10


def test_trace_is_deterministic_and_vod_shaped() -> None:
    cfg = TraceConfig.scaled(30_000, seed=5)
    a, b = generate(cfg), generate(cfg)
    assert a.objects == b.objects and a.sizes == b.sizes and a.keys == b.keys
    assert list(a.times) == sorted(a.times)
    assert all(300_000 <= s <= 20_000_000 for s in a.sizes)
    info = describe(a)
    assert info["objects"] >= 10_000
    assert 30 < info["one_hit_objects_pct"] < 90
    # Viewers abandon: the first segment of a title is requested more than the 100th.
    first = sum(1 for o in a.objects if a.keys[o].endswith("seg-00000.m4s"))
    hundredth = sum(1 for o in a.objects if a.keys[o].endswith("seg-00100.m4s"))
    assert first > 2 * hundredth


def test_chosen_policy_beats_lru_on_byte_misses_at_5_percent() -> None:
    trace = generate(TraceConfig.scaled(150_000, seed=11))
    capacity = trace.catalog_bytes * 5 // 100
    requested = trace.requested_bytes()
    lru_missed = simulate(trace, Lru(capacity), capacity)[0] / requested
    chosen_missed, _, written, _ = simulate(trace, CachePolicy(capacity), capacity)
    assert chosen_missed / requested < 0.96 * lru_missed
    assert written < 0.3 * requested  # and it writes a fraction of what LRU writes


def test_a_viewer_in_progress_raises_the_rate_of_the_segments_ahead() -> None:
    policy = CachePolicy(1000 * MB)
    key = "/v/t/h264-1080p/seg-{:05d}.m4s"
    for seg in range(10):  # a first viewer plays segments 0-9, 6 s apart
        request(policy, key.format(seg), MB, 6.0 * seg)
    for seg in range(3):  # a second one starts a minute later and is at segment 2
        request(policy, key.format(seg), MB, 60.0 + 6.0 * seg)
    ahead, behind = key.format(8), key.format(1)
    assert policy.rate(ahead, 75.0) > 10 * policy.rate(ahead, 300.0)  # expected in ~36 s
    assert policy.rate(behind, 75.0) < 1.01 * policy.rate(behind, 300.0)  # already passed


def test_unseen_files_of_a_watched_title_outrank_those_of_a_cold_title() -> None:
    policy = CachePolicy(1000 * MB)
    for viewer in range(5):
        for seg in range(20):
            request(policy, f"/v/hot/h264-720p/seg-{seg:05d}.m4s", MB, 1000.0 * viewer + seg)
    request(policy, "/v/cold/h264-720p/seg-00000.m4s", MB, 5000.0)
    # A segment of the hot title past those requested so far beats one requested once.
    hot = policy.rate("/v/hot/h264-720p/seg-00030.m4s", 6000.0)
    cold = policy.rate("/v/cold/h264-720p/seg-00000.m4s", 6000.0)
    assert "/v/hot/h264-720p/seg-00030.m4s" not in policy
    assert hot > 2 * cold > 0.0
    # A rendition nobody has asked for yet gets no share of the title's popularity.
    assert policy.rate("/v/hot/h264-2160p/seg-00030.m4s", 6000.0) == 0.0


def test_hits_batched_at_one_instant_do_not_inflate_the_segments_ahead() -> None:
    # The daemon reports hits once a second with one timestamp: consecutive segments of a
    # session can arrive "0 s apart". The learnt segment duration must not collapse towards 0,
    # which would make every segment ahead of a cursor look due immediately (rate -> infinity).
    policy = CachePolicy(1000 * MB)
    key = "/v/b/h264-720p/seg-{:05d}.m4s"
    for seg in range(300):
        request(policy, key.format(seg), MB, 100.0)
    assert policy.rate(key.format(400), 100.0) <= 1.5  # at most ~1 request per clamped second


def test_a_floor_set_while_viewers_play_does_not_freeze_admission() -> None:
    # Evictions during a session in progress see boosted rates; a floor built from them stayed
    # above every rate once the session ended: nothing admitted, nothing evicted, ever again.
    policy = CachePolicy(16 * 2**20)
    now = 1.7e9
    old = [f"/v/evict/old/seg-{i:05d}.m4s" for i in range(20)]
    new = [f"/v/evict/new/seg-{i:05d}.m4s" for i in range(12)]
    for _ in range(2):
        for k in old:
            now += 0.05
            request(policy, k, 1_000_000, now)
    hits = 0
    for _ in range(6):  # a new rendition/title becomes popular
        for k in new:
            now += 0.05
            hits += request(policy, k, 1_000_000, now)
    assert all(k in policy for k in new)
    assert hits >= 20


def test_a_restart_seeds_the_admission_floor_so_a_scan_right_after_stays_out() -> None:
    before = CachePolicy(100 * MB)
    popular = [f"/v/hit/h264-1080p/seg-{i:05d}.m4s" for i in range(60)]
    popular_then_scan(before, popular, scan=40)  # full: 60 popular + 40 cold
    cold = [f"/v/scan/h264-1080p/seg-{i:05d}.m4s" for i in range(40)]
    states = {key: before.export_state(key) for key in popular + cold}

    def scan_after_restart(settle: bool) -> int:
        after = CachePolicy(100 * MB)
        for key, state in states.items():
            after.restore(key, MB, state, 1_000.0)
        if settle:
            after.settle_after_restore(1_000.0)
        stored = 0
        for i in range(200):  # one-hit files, right after the restart
            key = f"/v/scan2/h264-1080p/seg-{i:05d}.m4s"
            request(after, key, MB, 1_001.0 + i)
            stored += key in after
        return stored

    assert scan_after_restart(settle=False) >= 10  # the floor had to be learnt again
    assert scan_after_restart(settle=True) == 0


def test_a_cache_restored_with_room_to_spare_keeps_admitting() -> None:
    policy = CachePolicy(100 * MB)
    policy.restore("/v/a/h264-1080p/seg-00001.m4s", MB, (3, 900.0), 1_000.0)
    policy.settle_after_restore(1_000.0)  # 1 % full: no floor
    assert request(policy, "/v/b/h264-1080p/seg-00001.m4s", MB, 1_001.0) is False
    assert "/v/b/h264-1080p/seg-00001.m4s" in policy
