"""The catalog's SQLite schema as an ordered list of migrations, tracked by ``user_version``.

:data:`MIGRATIONS` is append-only: migration ``n`` (1-based) takes the database from
``user_version = n - 1`` to ``n``. :func:`migrate` applies the missing ones inside one
``BEGIN IMMEDIATE`` transaction, reading the version after taking the write lock, so that
several processes (the API and N workers) opening a fresh database at once apply each migration
exactly once. A database newer than this software is refused rather than misread.

Choices worth knowing:

- Tables are ``STRICT`` (SQLite >= 3.37): a float in an INTEGER column is an error, not a
  silently stored REAL. ``CHECK`` constraints repeat the id pattern and enumerations so that
  no code path (or a hand-edited row) can store a value the rest of the system cannot parse.
- ``videos`` has an ``INTEGER PRIMARY KEY`` (``id``) besides its ``video_id``: the FTS5 index is
  an external-content table keyed by rowid, and a rowid that is not an alias of an
  ``INTEGER PRIMARY KEY`` may change on ``VACUUM``, which would silently detach the index.
- Search: ``videos_fts`` is external-content FTS5 over title, description and tags, kept in
  sync by triggers on insert, delete and on updates *of those columns only*, so view counts and
  status changes never touch it. Tags are indexed as their plain text joined by spaces
  (:data:`TAGS_TEXT`), not as the stored JSON array, whose ``\u00e9`` escapes would make
  ``été`` unsearchable and ``u00e9t`` a match (migration 2). The content table is the view
  ``videos_search``, which shows the tags the same way, so that FTS5's ``rebuild`` and
  ``integrity-check`` commands (and any read of the index's columns) see what the triggers
  indexed.
- Jobs carry no dependency list: the pipeline enqueues stage by stage (see
  :mod:`origin.catalog.repo`); ``UNIQUE (video_id, key)`` makes every enqueue idempotent.
"""

from __future__ import annotations

import sqlite3

from origin.catalog.errors import CatalogError

ID_CHECK = "length({col}) BETWEEN 1 AND 64 AND {col} NOT GLOB '*[^A-Za-z0-9_-]*'"

_V1: tuple[str, ...] = (
    f"""
    CREATE TABLE videos (
        id              INTEGER PRIMARY KEY,
        video_id        TEXT NOT NULL UNIQUE CHECK ({ID_CHECK.format(col="video_id")}),
        title           TEXT NOT NULL CHECK (length(trim(title)) > 0),
        description     TEXT NOT NULL DEFAULT '',
        tags            TEXT NOT NULL DEFAULT '[]'
                        CHECK (json_valid(tags) AND json_type(tags) = 'array'),
        status          TEXT NOT NULL DEFAULT 'PENDING'
                        CHECK (status IN ('PENDING', 'SEGMENTED', 'TRANSCODING', 'READY',
                                          'FAILED')),
        failure_reason  TEXT,
        duration_s      REAL CHECK (duration_s IS NULL OR duration_s > 0),
        width           INTEGER CHECK (width IS NULL OR width > 0),
        height          INTEGER CHECK (height IS NULL OR height > 0),
        source_path     TEXT,
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        published_at    REAL,
        view_count      INTEGER NOT NULL DEFAULT 0 CHECK (view_count >= 0),
        deleted_at      REAL
    ) STRICT
    """,
    "CREATE INDEX videos_by_update ON videos (updated_at, video_id)",
    "CREATE INDEX videos_by_status ON videos (status, updated_at, video_id)",
    """
    CREATE TABLE renditions (
        video_id            TEXT NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
        name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
        kind                TEXT NOT NULL CHECK (kind IN ('video', 'audio', 'subtitle')),
        codec               TEXT NOT NULL,
        width               INTEGER CHECK (width IS NULL OR width > 0),
        height              INTEGER CHECK (height IS NULL OR height > 0),
        bitrate_bps         INTEGER CHECK (bitrate_bps IS NULL OR bitrate_bps > 0),
        average_bitrate_bps INTEGER CHECK (average_bitrate_bps IS NULL OR average_bitrate_bps > 0),
        codecs_string       TEXT,
        language            TEXT,
        PRIMARY KEY (video_id, name)
    ) STRICT
    """,
    """
    CREATE TABLE published_files (
        video_id    TEXT NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
        path        TEXT NOT NULL
                    CHECK (substr(path, 1, length(video_id) + 4) = '/v/' || video_id || '/'),
        size        INTEGER NOT NULL CHECK (size >= 0),
        rendition   TEXT,
        PRIMARY KEY (video_id, path),
        FOREIGN KEY (video_id, rendition) REFERENCES renditions (video_id, name)
            ON DELETE CASCADE
    ) STRICT
    """,
    "CREATE INDEX published_files_by_rendition ON published_files (video_id, rendition)",
    """
    CREATE TABLE jobs (
        job_id           INTEGER PRIMARY KEY,
        video_id         TEXT NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
        kind             TEXT NOT NULL,
        key              TEXT NOT NULL,
        payload          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(payload)),
        state            TEXT NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'leased', 'done', 'failed')),
        attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        max_attempts     INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
        lease_owner      TEXT,
        lease_expires_at REAL,
        not_before       REAL NOT NULL,
        last_error       TEXT,
        error_log        TEXT NOT NULL DEFAULT '[]'
                         CHECK (json_valid(error_log) AND json_type(error_log) = 'array'),
        result           TEXT CHECK (result IS NULL OR json_valid(result)),
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        UNIQUE (video_id, key),
        CHECK ((state = 'leased') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
    ) STRICT
    """,
    # Claim scans only claimable rows, in job_id order.
    "CREATE INDEX jobs_queued ON jobs (job_id) WHERE state = 'queued'",
    "CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'leased'",
    "CREATE INDEX jobs_by_video ON jobs (video_id, kind, state)",
    f"""
    CREATE TABLE uploads (
        upload_id        TEXT PRIMARY KEY CHECK ({ID_CHECK.format(col="upload_id")}),
        size             INTEGER NOT NULL CHECK (size > 0),
        received         INTEGER NOT NULL DEFAULT 0 CHECK (received BETWEEN 0 AND size),
        sha256_expected  TEXT CHECK (sha256_expected IS NULL OR length(sha256_expected) = 64),
        sha256_actual    TEXT CHECK (sha256_actual IS NULL OR length(sha256_actual) = 64),
        title            TEXT NOT NULL CHECK (length(trim(title)) > 0),
        description      TEXT NOT NULL DEFAULT '',
        tags             TEXT NOT NULL DEFAULT '[]'
                         CHECK (json_valid(tags) AND json_type(tags) = 'array'),
        status           TEXT NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'complete', 'aborted')),
        temp_path        TEXT NOT NULL,
        video_id         TEXT REFERENCES videos (video_id) ON DELETE SET NULL,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL
    ) STRICT
    """,
    "CREATE INDEX uploads_by_video ON uploads (video_id)",
    """
    CREATE VIRTUAL TABLE videos_fts USING fts5 (
        title, description, tags,
        content = 'videos', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER videos_fts_insert AFTER INSERT ON videos BEGIN
        INSERT INTO videos_fts (rowid, title, description, tags)
        VALUES (new.id, new.title, new.description, new.tags);
    END
    """,
    """
    CREATE TRIGGER videos_fts_delete AFTER DELETE ON videos BEGIN
        INSERT INTO videos_fts (videos_fts, rowid, title, description, tags)
        VALUES ('delete', old.id, old.title, old.description, old.tags);
    END
    """,
    """
    CREATE TRIGGER videos_fts_update AFTER UPDATE OF title, description, tags ON videos BEGIN
        INSERT INTO videos_fts (videos_fts, rowid, title, description, tags)
        VALUES ('delete', old.id, old.title, old.description, old.tags);
        INSERT INTO videos_fts (rowid, title, description, tags)
        VALUES (new.id, new.title, new.description, new.tags);
    END
    """,
)

TAGS_TEXT = (
    "(WITH RECURSIVE i (n) AS ("
    "SELECT 0 WHERE json_array_length({tags}) > 0 "
    "UNION ALL SELECT n + 1 FROM i WHERE n + 1 < json_array_length({tags})) "
    "SELECT coalesce(group_concat(json_extract({tags}, '$[' || n || ']'), ' '), '') "
    "FROM (SELECT n FROM i ORDER BY n))"
)
"""SQL for a tags JSON array as its tags joined by spaces, in array order (``{tags}``: the
column). The order is fixed so that a trigger's ``delete`` repeats exactly what was indexed.
A recursive CTE, not ``json_each``: SQLite refuses a table-valued function inside FTS5's
``rebuild`` and ``integrity-check`` scans of the content view."""


def _tags_text(tags: str) -> str:
    return TAGS_TEXT.format(tags=tags)


_V2: tuple[str, ...] = (
    "DROP TRIGGER videos_fts_insert",
    "DROP TRIGGER videos_fts_delete",
    "DROP TRIGGER videos_fts_update",
    "DROP TABLE videos_fts",
    f"""
    CREATE VIEW videos_search (id, title, description, tags) AS
    SELECT id, title, description, {_tags_text("videos.tags")} FROM videos
    """,
    """
    CREATE VIRTUAL TABLE videos_fts USING fts5 (
        title, description, tags,
        content = 'videos_search', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2'
    )
    """,
    f"""
    CREATE TRIGGER videos_fts_insert AFTER INSERT ON videos BEGIN
        INSERT INTO videos_fts (rowid, title, description, tags)
        VALUES (new.id, new.title, new.description, {_tags_text("new.tags")});
    END
    """,
    f"""
    CREATE TRIGGER videos_fts_delete AFTER DELETE ON videos BEGIN
        INSERT INTO videos_fts (videos_fts, rowid, title, description, tags)
        VALUES ('delete', old.id, old.title, old.description, {_tags_text("old.tags")});
    END
    """,
    f"""
    CREATE TRIGGER videos_fts_update AFTER UPDATE OF title, description, tags ON videos BEGIN
        INSERT INTO videos_fts (videos_fts, rowid, title, description, tags)
        VALUES ('delete', old.id, old.title, old.description, {_tags_text("old.tags")});
        INSERT INTO videos_fts (rowid, title, description, tags)
        VALUES (new.id, new.title, new.description, {_tags_text("new.tags")});
    END
    """,
    # Index the rows already there, from the view.
    "INSERT INTO videos_fts (videos_fts) VALUES ('rebuild')",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
"""Statements per migration, in order; append new migrations, never edit applied ones."""

SCHEMA_VERSION = len(MIGRATIONS)

MIN_SQLITE = (3, 37, 0)
"""STRICT tables appeared in SQLite 3.37.0 (2021-11)."""


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; return the version found before.

    ``conn`` must be in autocommit mode (``isolation_level=None``): the transaction is explicit
    so that DDL and the version bump commit together or not at all.
    """
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise CatalogError(
            f"SQLite {sqlite3.sqlite_version} is too old; the catalog needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or newer"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = user_version(conn)
        if found > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog schema version {found} is newer than this software's "
                f"({SCHEMA_VERSION}); upgrade vodedge"
            )
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                conn.execute(statement)
        if found < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
