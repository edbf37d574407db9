"""vodedge.files.write_file_atomic: the old file or the new one, never a torn one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vodedge.files import write_file_atomic


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    f = tmp_path / "state.json"
    write_file_atomic(f, b"old")
    write_file_atomic(f, b"new")
    assert f.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "state.json"
    write_file_atomic(f, b"old")

    def crash(*_: object) -> None:  # forced fault: the rename never happens
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        write_file_atomic(f, b"new")
    assert f.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
