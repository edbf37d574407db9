"""Property-based fuzzing of the live admin API from its own OpenAPI document (schemathesis):
whatever a client sends, the API never answers 5xx and every answer matches the document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from appliance.admin.openapi import document
from tests.support.appliance_proc import ADMIN_TOKEN, Appliance, Upstream, run_appliance
from vodedge import __version__

schema = schemathesis.openapi.from_dict(document(__version__))
schema.config.generation.update(max_examples=25)


@pytest.fixture(scope="module")
def fuzzed(module_tmp: Path, upstream: Upstream) -> Iterator[Appliance]:
    with run_appliance(module_tmp / "fuzz", [upstream.base_url], workers=2) as a:
        yield a


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_never_5xx_and_matches_its_document(
    case: schemathesis.Case[Any], fuzzed: Appliance
) -> None:
    case.call_and_validate(
        base_url=fuzzed.admin_url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
