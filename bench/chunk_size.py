"""Chunk size of the LMDB store, chosen by measurement.

For each candidate chunk size, a real LMDB store (``appliance.store``) holds objects of 2 MiB
(a typical segment) and 16 MiB (a 4K segment); the benchmark times, in one interleaved run:

- ``write``: storing objects (one write transaction each, as a fill does), in MB/s;
- ``full``:  a whole-object hit as the hot path does it (read transaction, every chunk, checksum
  verification), in us per object;
- ``range``: a 64 KiB Range hit in the middle of the object (touches one or two chunks, and
  verifies all of them: the cost that grows with chunk size);
- ``verify``: the share of ``full`` spent on xxh3 checksums (verify on vs off).

Results are printed as ratios against the 1 MiB reference. Run:
``.venv/bin/python bench/chunk_size.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from appliance.config import DiskConfig, StorageConfig
from appliance.store import Store, new_meta, split_chunks

SIZES = [256 * 1024, 1024 * 1024, 4 * 1024 * 1024]
REF = 1024 * 1024


def _measure(chunk: int, obj_size: int, n_objects: int, reads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StorageConfig(
            disks=(DiskConfig(Path(tmp) / "d0", 4 * 2**30),), chunk_size=chunk, sync=False
        )
        store = Store(cfg)
        store.open()
        bodies = [os.urandom(obj_size) for _ in range(n_objects)]

        async def write_all() -> float:
            t0 = time.perf_counter()
            for i, b in enumerate(bodies):
                chunks = split_chunks(b, chunk)
                meta = new_meta(chunks, len(b), "video/iso.segment", '"e"', 0.0, "x", chunk)
                await store.put(f"/v/b/r/seg-{i:05d}.m4s", meta, chunks)
            return time.perf_counter() - t0

        wt = asyncio.run(write_all())
        keys = [f"/v/b/r/seg-{i:05d}.m4s" for i in range(n_objects)]

        def hit(verify: bool, start: int, end: int) -> float:
            t0 = time.perf_counter()
            for r in range(reads):
                v = store.open_view(keys[r % n_objects])
                assert v is not None
                got = v.read_verified(start // chunk, end // chunk, verify)
                assert got is not None
                v.release()
            return (time.perf_counter() - t0) / reads * 1e6

        mid = obj_size // 2
        res = {
            "write_MBps": obj_size * n_objects / wt / 1e6,
            "full_us": hit(True, 0, obj_size - 1),
            "full_noverify_us": hit(False, 0, obj_size - 1),
            "range64k_us": hit(True, mid, mid + 65535),
        }
        store.close()
        return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rounds = 2 if args.quick else 5
    reads = 300 if args.quick else 2000
    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    for obj_size in (2 * 2**20, 16 * 2**20):
        per: dict[int, list[dict[str, float]]] = {c: [] for c in SIZES}
        n = 32 if obj_size == 2 * 2**20 else 8
        for _ in range(rounds):  # interleaved: every size once per round
            for c in SIZES:
                per[c].append(_measure(c, obj_size, n, reads))
        results[f"{obj_size // 2**20}MiB"] = per
    print(f"chunk size benchmark ({rounds} interleaved rounds, medians; ratio = x / 1MiB)")
    print(
        f"{'object':>7} {'chunk':>6} {'write MB/s':>11} {'full hit us':>12} "
        f"{'verify %':>9} {'64K range us':>13}  ratios full / range"
    )
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for obj, per in results.items():
        med = {
            c: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for c, runs in per.items()
        }
        summary[obj] = {str(c): v for c, v in med.items()}
        for c in SIZES:
            m = med[c]
            verify_share = 100 * (1 - m["full_noverify_us"] / m["full_us"])
            print(
                f"{obj:>7} {c // 1024:>5}K {m['write_MBps']:>11.0f} {m['full_us']:>12.1f} "
                f"{verify_share:>8.0f}% {m['range64k_us']:>13.1f}  "
                f"{m['full_us'] / med[REF]['full_us']:.2f}x / "
                f"{m['range64k_us'] / med[REF]['range64k_us']:.2f}x"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
