"""Opening the database: pragmas, migrations applied once, and versions it must refuse."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from origin.catalog import CatalogError, SqliteCatalog
from origin.catalog.schema import MIGRATIONS, SCHEMA_VERSION, user_version

TABLES = {"videos", "renditions", "published_files", "jobs", "uploads", "videos_fts"}


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_open_creates_the_directory_and_every_table(db_path: Path) -> None:
    SqliteCatalog.open(db_path).close()
    conn = raw(db_path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert names >= TABLES
    assert user_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_opening_again_is_a_no_op_and_keeps_data(db_path: Path) -> None:
    with SqliteCatalog.open(db_path) as first:
        video = first.create_video("kept")
    with SqliteCatalog.open(db_path) as second:
        assert second.get_video(video.video_id) == video
    assert user_version(raw(db_path)) == SCHEMA_VERSION


def test_connection_settings(catalog: SqliteCatalog) -> None:
    with catalog._tx(write=False) as conn:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    SqliteCatalog.open(db_path).close()
    raw(db_path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CatalogError, match="newer than this software"):
        SqliteCatalog.open(db_path)


def test_a_failed_migration_leaves_nothing_behind(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = ((*MIGRATIONS[0], "CREATE TABLE videos (x)"),)
    monkeypatch.setattr("origin.catalog.schema.MIGRATIONS", broken)
    with pytest.raises(CatalogError):
        SqliteCatalog.open(db_path)
    conn = raw(db_path)
    assert user_version(conn) == 0
    assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0


def test_a_directory_in_the_way_is_a_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").mkdir()
    with pytest.raises(CatalogError, match="cannot open catalog"):
        SqliteCatalog.open(tmp_path / "catalog.db")


def test_closed_catalog_refuses_work(catalog: SqliteCatalog) -> None:
    catalog.close()
    catalog.close()  # twice is fine
    with pytest.raises(CatalogError, match="closed"):
        catalog.list_videos()


def open_and_count(path: str) -> int:
    with SqliteCatalog.open(path) as catalog:
        catalog.create_video("one per process")
        return len(catalog.list_videos().videos)


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        seen = pool.map(open_and_count, [str(db_path)] * 4)
    assert max(seen) == 4
    assert user_version(raw(db_path)) == SCHEMA_VERSION


def test_migration_2_indexes_the_tags_of_existing_rows_as_text(db_path: Path) -> None:
    """A catalog made by the first schema indexed the tags' JSON text (``\\u00e9``)."""
    db_path.parent.mkdir(parents=True)
    conn = raw(db_path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO videos (video_id, title, tags, created_at, updated_at) "
        "VALUES ('old', 'Old title', ?, 1, 1)",
        ('["\\u00e9t\\u00e9","\\u65e5\\u672c"]',),
    )
    conn.execute("PRAGMA user_version = 1")
    assert conn.execute("SELECT rowid FROM videos_fts WHERE videos_fts MATCH 'u00e9t'").fetchall()
    conn.close()
    with SqliteCatalog.open(db_path) as catalog:
        assert catalog.get_video("old").tags == ("été", "日本")
        for query, found in (("été", ["old"]), ("日本", ["old"]), ("u00e9t", []), ("old", ["old"])):
            assert [h.video.video_id for h in catalog.search(query)] == found, query
        catalog.update_video("old", tags=["x"])  # the new triggers delete what was indexed
        assert catalog.search("été") == []
    assert user_version(raw(db_path)) == SCHEMA_VERSION
