"""What sending a hit's bytes costs the sender, by the way they are sent (loopback TCP).

Usage (from the repo root)::

    .venv/bin/python bench/send_paths.py            # 64 x 2 MiB objects, 20 passes, 2 repeats

One sender (this process) writes 64 objects of 2 MiB over a loopback TCP connection, 20 passes,
to a receiver process that reads into a buffer; both pinned to the benchmark cores. Each way is
timed by the sender's own CPU time (``time.thread_time``: user + system of the sending thread,
which on loopback includes the delivery to the receiving socket):

- ``copy-ram``: ``sendall`` from bytes in process memory (the RAM tier's case; the reference);
- ``copy-map``: ``sendall`` from memoryviews into a read-only file mapping (LMDB's case);
- ``hash+copy-map``: the same after an xxh3-64 of each object (a checksum check per hit);
- ``sendfile``: ``os.sendfile`` from the file (nginx's way; zero copy on the sending side);
- ``hash+sendfile``: the same after reading the mapping for an xxh3-64.

Why it exists: it answers whether the appliance should send hits with ``sendfile`` from LMDB's
data file instead of writing memoryviews. Results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cpus, table

WAYS = ("copy-ram", "copy-map", "hash+copy-map", "sendfile", "hash+sendfile")
REFERENCE = "copy-ram"


def _receive(port: int, total: int, cpus: tuple[int, ...]) -> None:
    os.sched_setaffinity(0, cpus)
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(1 << 20)
    got = 0
    while got < total:
        n = s.recv_into(buf)
        if not n:
            break
        got += n
    s.close()


def measure(
    way: str, path: Path, objects: int, size: int, passes: int, cpus: tuple[int, ...]
) -> float:
    """Sender CPU seconds per GB sent."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    total = objects * size * passes
    rx = multiprocessing.Process(target=_receive, args=(srv.getsockname()[1], total, cpus))
    rx.start()
    conn, _ = srv.accept()
    fd = os.open(path, os.O_RDONLY)
    m = mmap.mmap(fd, objects * size, prot=mmap.PROT_READ)
    view = memoryview(m)
    pieces = [view[i * size : (i + 1) * size] for i in range(objects)]
    in_ram = [bytes(p) for p in pieces]
    t0 = time.thread_time()
    for _ in range(passes):
        for i in range(objects):
            if way == "copy-ram":
                conn.sendall(in_ram[i])
                continue
            if way.startswith("hash+"):
                xxhash.xxh3_64_intdigest(pieces[i])
            if way.endswith("copy-map"):
                conn.sendall(pieces[i])
            else:
                off, left = i * size, size
                while left:
                    n = os.sendfile(conn.fileno(), fd, off, left)
                    off += n
                    left -= n
    cpu = time.thread_time() - t0
    rx.join()
    conn.close()
    srv.close()
    del pieces, view
    m.close()
    os.close(fd)
    return cpu / (total / 1e9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=64)
    ap.add_argument("--size", type=int, default=2 * 2**20)
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    cpus = bench_cpus(2)
    os.sched_setaffinity(0, cpus)
    with tempfile.TemporaryDirectory(prefix="vodedge-send-") as tmp:
        path = Path(tmp) / "objects.dat"
        path.write_bytes(os.urandom(args.objects * args.size))
        runs: dict[str, list[float]] = {w: [] for w in WAYS}
        for _ in range(args.repeats):  # interleaved, so drift hits every way alike
            for way in WAYS:
                runs[way].append(measure(way, path, args.objects, args.size, args.passes, cpus))
    ref = statistics.median(runs[REFERENCE])
    rows = []
    for way in WAYS:
        med = statistics.median(runs[way])
        rows.append(
            [way, f"{med:.3f}", f"{med / ref:.2f}", " ".join(f"{v:.3f}" for v in runs[way])]
        )
    print(
        f"sender CPU-s per GB, {args.objects} x {args.size // 1024} KiB x {args.passes} passes, "
        f"loopback, CPUs {','.join(map(str, cpus))}"
    )
    print(table(["way", "CPU-s/GB (median)", f"x {REFERENCE}", "per repeat"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
