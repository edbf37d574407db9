"""What a worker holds per title (``video_id``): bytes and complete files.

Kept up to date by the cache policy's listener on every insert, eviction and removal, so the
heartbeat and the admin API read it without walking the store. Each worker counts only the keys
it owns; the supervisor adds the workers' counts up.
"""

from __future__ import annotations


def video_id_of(key: str) -> str:
    """``/v/{video_id}/…`` -> ``video_id`` (cache keys are validated object paths)."""
    return key.split("/", 3)[2]


class TitleIndex:
    __slots__ = ("_titles",)

    def __init__(self) -> None:
        self._titles: dict[str, list[int]] = {}

    def change(self, key: str, size: int, sign: int) -> None:
        """An object of ``size`` bytes entered (``sign`` 1) or left (-1)."""
        vid = video_id_of(key)
        t = self._titles.get(vid)
        if t is None:
            if sign < 0:
                return
            t = self._titles[vid] = [0, 0]
        t[0] += sign * size
        t[1] += sign
        if t[1] <= 0:
            del self._titles[vid]

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """``{video_id: (bytes, files)}``."""
        return {vid: (t[0], t[1]) for vid, t in self._titles.items()}

    def __len__(self) -> int:
        return len(self._titles)
