"""``vodedge-control-plane``: prints its version until the control plane is built."""

from __future__ import annotations

import sys

from vodedge import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] not in ("--version", "version"):
        print("vodedge-control-plane: not implemented yet; only --version", file=sys.stderr)
        return 2
    print(f"vodedge-control-plane {__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
