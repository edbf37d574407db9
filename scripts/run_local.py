"""``make run``: the whole system on loopback with embedded defaults, data under ./var.

Generates a sample title on first run (real files can be dropped under
``var/origin/media/v/{video_id}/`` instead), writes configs into ``var/`` when absent, starts the
origin (media, upload and catalog API), one encode worker and one appliance in front of the
origin, prints the playback URLs and the ingest command, and stays in the foreground until
Ctrl-C, then stops them by PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from origin.sample import SampleError, make_sample

ROOT = Path(__file__).resolve().parents[1]
VAR = Path(os.environ.get("VODEDGE_VAR", ROOT / "var"))
ORIGIN_PORT = int(os.environ.get("VODEDGE_ORIGIN_PORT", "8081"))
APPLIANCE_PORT = int(os.environ.get("VODEDGE_APPLIANCE_PORT", "8080"))
ADMIN_PORT = int(os.environ.get("VODEDGE_ADMIN_PORT", "8090"))
ADMIN_TOKEN = "dev-admin-token-change-me"  # loopback only; a real box gets a random one
API_TOKEN = "dev-origin-token-change-me"  # the origin API's token, loopback only

ORIGIN_TOML = """# written by `make run`; edit freely, it is not overwritten
[server]
listen = ["127.0.0.1:{port}"]

[media]
root = "{root}"
sources = "{var}/origin/sources"

[catalog]
path = "{var}/origin/catalog.db"

[api]
tokens = ["{api_token}"]
upload_dir = "{var}/origin/uploads"

[pipeline]
work_dir = "{var}/origin/work"
"""

APPLIANCE_TOML = """# written by `make run`; keys: firmware-config/appliance.toml; not overwritten
[server]
listen = ["127.0.0.1:{port}"]
workers = 2

[admin]
listen = "127.0.0.1:{admin}"
token = "{admin_token}"

[fill]
origins = ["http://127.0.0.1:{origin}"]

[[storage.disks]]
path = "{disk}"
size = "2GB"

[runtime]
run_dir = "{run}"
"""


def _write_config(path: Path, text: str) -> Path:
    """Generated each run from the template above (edit the template, not the file)."""
    path.write_text(text)
    return path


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"run: {what} exited with code {proc.returncode} (see its log above)")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"run: {what} did not become healthy at {url} within {timeout:.0f}s")


def main() -> int:
    media = VAR / "origin" / "media"
    media.mkdir(parents=True, exist_ok=True)
    print("run: preparing the sample title (first run takes a few seconds)...", flush=True)
    try:
        sample = asyncio.run(make_sample(media))
    except SampleError as e:
        print(f"run: cannot make the sample title: {e}", file=sys.stderr)
        return 1
    origin_toml = ORIGIN_TOML.format(port=ORIGIN_PORT, root=media, var=VAR, api_token=API_TOKEN)
    origin_cfg = _write_config(VAR / "origin.toml", origin_toml)
    appliance_cfg = _write_config(
        VAR / "appliance.toml",
        APPLIANCE_TOML.format(
            port=APPLIANCE_PORT,
            admin=ADMIN_PORT,
            admin_token=ADMIN_TOKEN,
            origin=ORIGIN_PORT,
            disk=VAR / "appliance" / "disk0",
            run=VAR / "appliance" / "run",
        ),
    )
    py = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    try:
        origin = subprocess.Popen([py, "-m", "origin.cli", "serve", "-c", str(origin_cfg)])
        procs.append(origin)
        _wait(f"http://127.0.0.1:{ORIGIN_PORT}/healthz", origin, "origin")
        procs.append(subprocess.Popen([py, "-m", "origin.cli", "worker", "-c", str(origin_cfg)]))
        appliance = subprocess.Popen([py, "-m", "appliance.cli", "serve", "-c", str(appliance_cfg)])
        procs.append(appliance)
        _wait(f"http://127.0.0.1:{APPLIANCE_PORT}/healthz", appliance, "appliance")
        video = sample.directory.name
        base = f"http://127.0.0.1:{APPLIANCE_PORT}/v/{video}"
        print(
            "\nvodedge is running (Ctrl-C stops it)\n"
            f"  HLS master via the appliance:  {base}/master.m3u8\n"
            f"  DASH manifest via the appliance: {base}/manifest.mpd\n"
            f"  origin:   http://127.0.0.1:{ORIGIN_PORT}/v/{video}/master.m3u8\n"
            f"  upload a video (encoded by the worker, then under /v/<video_id>/):\n"
            f"    .venv/bin/vodedge-origin ingest FILE --title 'My title' "
            f"--server http://127.0.0.1:{ORIGIN_PORT} --token {API_TOKEN}\n"
            f"  catalog:  curl -H 'Authorization: Bearer {API_TOKEN}' "
            f"http://127.0.0.1:{ORIGIN_PORT}/api/v1/videos\n"
            f"  metrics:  http://127.0.0.1:{APPLIANCE_PORT}/metrics\n"
            f"  admin:    curl -H 'Authorization: Bearer {ADMIN_TOKEN}' "
            f"http://127.0.0.1:{ADMIN_PORT}/admin/v1/status\n"
            f"  data:     {VAR}\n",
            flush=True,
        )
        stop = False

        def on_signal(_s: int, _f: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=35)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    raise SystemExit(main())
