"""The origin's state: catalog of videos, uploads and the encode job queue (issue 4).

- :mod:`origin.catalog.repo`: the :class:`Catalog` interface and :class:`SqliteCatalog`.
- :mod:`origin.catalog.models`: rows as frozen dataclasses and the pure rules about them.
- :mod:`origin.catalog.schema`: the SQLite DDL as ordered migrations (``user_version``).
- :mod:`origin.catalog.fts`: user text to a safe FTS5 query; bm25 weights.
- :mod:`origin.catalog.rows`: rows to dataclasses and back.
- :mod:`origin.catalog.errors`: the error tree.
"""

from origin.catalog.errors import CatalogError, Conflict, Invalid, NotFound
from origin.catalog.models import (
    CatalogStats,
    Job,
    JobCounts,
    JobSpec,
    PublishedFile,
    Rendition,
    RetryPolicy,
    SearchHit,
    Upload,
    Video,
    VideoDetail,
    VideoPage,
    VideoStatus,
)
from origin.catalog.repo import Catalog, SqliteCatalog

__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogStats",
    "Conflict",
    "Invalid",
    "Job",
    "JobCounts",
    "JobSpec",
    "NotFound",
    "PublishedFile",
    "Rendition",
    "RetryPolicy",
    "SearchHit",
    "SqliteCatalog",
    "Upload",
    "Video",
    "VideoDetail",
    "VideoPage",
    "VideoStatus",
]
