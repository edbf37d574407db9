"""``vodedge-appliance``: ``serve -c FILE`` and ``check-config -c FILE``.

Exit codes: 0 ok, 2 bad config or usage (one line on stderr naming the key).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from appliance.config import load
from vodedge import __version__
from vodedge.configfile import ConfigError
from vodedge.logs import setup_logging
from vodedge.sizes import format_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vodedge-appliance", description="vodedge edge cache")
    ap.add_argument("--version", action="version", version=f"vodedge-appliance {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, helptext in (
        ("serve", "run the appliance in the foreground"),
        ("check-config", "validate a config file and print a summary"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("-c", "--config", required=True, type=Path)
    sp = sub.choices["serve"]
    sp.add_argument(
        "--shutdown-grace",
        type=float,
        default=None,
        help="override server.shutdown_timeout (seconds)",
    )
    args = ap.parse_args(argv)
    try:
        cfg = load(args.config)
    except ConfigError as e:
        print(f"vodedge-appliance: config error: {e}", file=sys.stderr)
        return 2
    if args.cmd == "check-config":
        print(f"{args.config}: ok (digest {cfg.digest})")
        print(f"  listen: {', '.join(f'{h}:{p}' for h, p in cfg.server.listen)}")
        print(f"  workers: {cfg.server.workers}")
        print(f"  upstreams: {', '.join(cfg.fill.upstreams)}")
        for d in cfg.storage.disks:
            print(f"  disk: {d.path} ({format_size(d.size)})")
        print(f"  tokens: {'required' if cfg.tokens.required else 'optional'}")
        return 0
    setup_logging("appliance", cfg.log_level)
    metrics_dir = prepare_metrics_dir(cfg.run_dir)
    from appliance.supervisor import Supervisor  # imports prometheus_client: after the env var

    return Supervisor(cfg, args.config.resolve(), metrics_dir, args.shutdown_grace).run()


def prepare_metrics_dir(run_dir: Path) -> Path:
    """A fresh multiprocess metrics folder, named in the environment before prometheus_client
    is imported (it picks its storage at import) and inherited by every worker."""
    mdir = run_dir / "metrics"
    shutil.rmtree(mdir, ignore_errors=True)
    mdir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mdir)
    return mdir


if __name__ == "__main__":
    raise SystemExit(main())
