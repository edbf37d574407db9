"""What the systemd unit tests share: reading a unit file and its times, and running a command
in the sandbox a unit asks for (as far as a test can build it without systemd)."""

from __future__ import annotations

import ctypes
import re
import sys
from collections import defaultdict

import pytest

from tests.ops.tools import run, tool


def parse_unit(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (systemd keys may repeat)."""
    out: defaultdict[str, list[str]] = defaultdict(list)
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out[f"{section}.{key}"].append(value)
    return out


def seconds(value: str) -> float:
    """A systemd time span of one unit (``45s``, ``10min``) in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|min)?", value)
    assert m, value
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "min": 60.0, None: 1.0}[m.group(2)]


# Runs argv[1:] in the unit's sandbox as far as a test can build it: no new privileges, the
# kernel's memory-deny-write-execute (PR_SET_MDWE, Linux 6.3+: what MemoryDenyWriteExecute=yes
# enforces), the unit's UMask= and, when VODEDGE_TEST_SYSCALLS lists them, a seccomp filter that
# kills the process on any other system call (stricter than the unit's SystemCallErrorNumber=).
SANDBOX = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)  # PR_SET_NO_NEW_PRIVS; PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN
allowed = os.environ.pop("VODEDGE_TEST_SYSCALLS", "")
if allowed:
    import seccomp
    f = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    for name in allowed.split(","):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (ValueError, RuntimeError):
            pass  # not a system call of this architecture
    f.load()
os.umask(0o027)
os.execv(sys.argv[1], sys.argv[1:])
"""
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-seccomp is built for it


def sandboxed(*argv: str, python: str = sys.executable) -> list[str]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    return [python, "-c", SANDBOX, *argv]


def allowed_syscalls(unit_keys: dict[str, list[str]]) -> set[str]:
    """The system calls a unit's SystemCallFilter= allows, groups expanded by systemd-analyze."""
    analyze = tool("systemd-analyze")
    todo = [w for v in unit_keys["Service.SystemCallFilter"] for w in v.split()]
    assert todo and not any(w.startswith("~") for w in todo), todo
    names: set[str] = set()
    seen: set[str] = set()
    while todo:
        item = todo.pop()
        if not item.startswith("@"):
            names.add(item)
        elif item not in seen:
            seen.add(item)
            out = run([analyze, "syscall-filter", item]).stdout.splitlines()[1:]
            todo += [w.strip() for w in out if w.strip() and not w.strip().startswith("#")]
    return names


def seccomp_python() -> str:
    if run([SYSTEM_PYTHON, "-c", "import seccomp"]).returncode != 0:
        pytest.skip("python3-seccomp is not installed (scripts/ensure_test_tools.sh installs it)")
    return SYSTEM_PYTHON
