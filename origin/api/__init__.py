"""The origin's HTTP API under ``/api/v1`` (issue 4): resumable uploads and the catalog.

- :mod:`origin.api.app`: the sub-application, its route table, auth and error middleware.
- :mod:`origin.api.auth`: which route needs which token (pure).
- :mod:`origin.api.uploads`: resumable upload handlers (stream, resume, complete, abort).
- :mod:`origin.api.upload_files`: the blocking file work behind uploads (run in threads).
- :mod:`origin.api.videos`: catalog handlers (list, detail, edit, delete, jobs, rerun, search).
- :mod:`origin.api.input`: request bodies, queries and headers to typed values (pure).
- :mod:`origin.api.render`: catalog rows to JSON (pure).
- :mod:`origin.api.boundary`: catalog calls off the loop, bounded JSON bodies.
- :mod:`origin.api.errors`: ``ApiError`` and the catalog's errors mapped to answers.
- :mod:`origin.api.openapi`: the OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

The client side of uploads is :mod:`origin.ingest` (``vodedge-origin ingest``).
"""

from origin.api.app import ApiSettings, make_api, mount

__all__ = ["ApiSettings", "make_api", "mount"]
