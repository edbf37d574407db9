"""The appliance's own Python per hit: the HTTP protocol driven in-process, no sockets.

Usage (from the repo root)::

    .venv/bin/python bench/hit_python.py            # 100k hits per case
    .venv/bin/python bench/hit_python.py --hits 5000 --flush-mib 8   # cold caches

A real Worker over a real LMDB store (64 objects per size, RAM tier on, checksums on) and its
:class:`appliance.http.HttpProtocol`, fed request bytes by ``data_received`` with a transport
that only counts what it is given: what remains is parsing, lookup, the head, the chunk list
and the bookkeeping — the Python a hit costs with warm caches, without the kernel. Each case is
printed with its ratio to the whole-object 256 KiB case (the reference). Attribution, not a
target: under load the same code runs with cold caches (docs/benchmarks.md, hit throughput);
``--flush-mib N`` copies N MiB between hits (untimed), as sending a 2 MiB body does, to show it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from appliance.config import from_raw
from appliance.http import HttpProtocol
from appliance.store import new_meta, split_chunks
from appliance.worker import Worker
from bench.common import table

MiB = 2**20


class CountingTransport:
    def __init__(self) -> None:
        self.n = 0

    def set_write_buffer_limits(self, high: int = 0, low: int = 0) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.n += len(data)

    def writelines(self, pieces: list[Any]) -> None:
        for p in pieces:
            self.n += len(p)

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


async def run(hits: int, flush_mib: int) -> list[tuple[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="vodedge-hitpy-"))
    raw = {
        "server": {"listen": ["127.0.0.1:1"], "workers": 1, "access_log": False},
        "admin": {"listen": "127.0.0.1:0", "token": "t" * 32},
        "fill": {"origins": ["http://127.0.0.1:9"]},
        "storage": {"disks": [{"path": str(tmp / "d0"), "size": "1GiB"}], "sync": False},
    }
    w = Worker(from_raw(raw, tmp), 0, 1, [], os.getpid())
    w.store.open()
    cases: dict[str, list[bytes]] = {}
    for size, name in ((256 * 1024, "256KiB"), (2 * MiB, "2MiB")):
        keys = [f"/v/bench-{name.lower()}/h264/seg-{i:05d}.m4s" for i in range(1, 65)]
        for k in keys:
            body = os.urandom(size)
            chunks = split_chunks(body, MiB)
            meta = new_meta(chunks, size, "video/iso.segment", '"e"', 0.0, "public", MiB)
            await w.store.put(k, meta, chunks)
        head = "HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        cases[f"{name} full"] = [f"GET {k} {head}\r\n".encode() for k in keys]
        cases[f"{name} range 64KiB"] = [
            f"GET {k} {head}Range: bytes=65536-131071\r\n\r\n".encode() for k in keys
        ]
    out = []
    for name, reqs in cases.items():
        p = HttpProtocol(w)
        p.connection_made(CountingTransport())  # type: ignore[arg-type]
        for r in reqs * 3:  # twice from LMDB (verified), then from the RAM tier
            p.data_received(r)
        junk, src = bytearray(flush_mib * MiB), bytes(flush_mib * MiB)
        spent = 0.0
        for i in range(hits):
            if flush_mib:
                junk[:] = src  # through the caches, untimed
            t0 = time.perf_counter()
            p.data_received(reqs[i & 63])
            spent += time.perf_counter() - t0
        out.append((name, spent / hits * 1e6))
    w.store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, default=100_000, help="hits per case")
    ap.add_argument("--flush-mib", type=int, default=0, help="MiB copied between hits")
    args = ap.parse_args(argv)
    results = uvloop.run(run(args.hits, args.flush_mib))
    ref = dict(results)["256KiB full"]
    print(
        f"Python per hit, in-process, {args.hits} hits per case, {args.flush_mib} MiB through "
        "the caches between hits (reference: 256KiB full)"
    )
    print(
        table(
            ["case", "us per hit", "x ref"], [[n, f"{v:.2f}", f"{v / ref:.2f}"] for n, v in results]
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
