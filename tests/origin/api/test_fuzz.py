"""Property-based fuzzing of the live API (a real ``serve`` process) from its own OpenAPI
document (schemathesis): whatever a client sends, no answer is a 5xx, and every answer matches
the document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from origin.api.openapi import document
from tests.origin.api.conftest import TOKEN
from tests.support.origin_proc import OriginProc, run_origin
from vodedge import __version__

schema = schemathesis.openapi.from_dict(document(__version__))
schema.config.generation.update(
    max_examples=5, modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProc]:
    base: Path = tmp_path_factory.mktemp("fuzz")
    api = {"tokens": [TOKEN], "max_upload_size": 100_000}
    with run_origin(base / "media", workdir=base, api=api) as proc:
        yield proc


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_5xx_and_matches_its_document(
    case: schemathesis.Case[Any], fuzzed: OriginProc
) -> None:
    case.call_and_validate(
        base_url=fuzzed.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
