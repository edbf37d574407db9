"""firmware-config/grafana/vodedge-appliance.json: loads, every panel is described and queries real
metrics with PromQL that Prometheus parses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.ops.tools import (
    DASHBOARD,
    assert_panels_do_not_overlap,
    dashboard_exprs,
    exported_metric_names,
    metric_names,
    promtool_check_exprs,
)

DASH: dict[str, Any] = json.loads(DASHBOARD.read_text())
PANELS: list[dict[str, Any]] = [p for p in DASH["panels"] if p["type"] != "row"]
ROWS: list[dict[str, Any]] = [p for p in DASH["panels"] if p["type"] == "row"]
DS_UID = "${datasource}"
# Grafana's variables, replaced by values Prometheus accepts
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def exprs() -> list[str]:
    return dashboard_exprs(DASH, VARIABLES)


def test_variables() -> None:
    variables = {v["name"]: v for v in DASH["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    inst = variables["instance"]
    assert inst["type"] == "query" and inst["datasource"]["uid"] == DS_UID
    assert inst["multi"] and inst["includeAll"]
    assert 36 <= DASH["schemaVersion"] <= 41


def test_every_panel_is_titled_described_and_queries_the_chosen_instances() -> None:
    assert ROWS and all(r["title"].strip() for r in ROWS)
    ids = [p["id"] for p in DASH["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in PANELS:
        assert p["title"].strip() and p["description"].strip(), p["id"]
        assert p["datasource"]["uid"] == DS_UID, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DS_UID and t["refId"], p["title"]
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])


def test_panels_do_not_overlap() -> None:
    assert_panels_do_not_overlap(DASH)


def test_every_metric_is_one_the_appliance_exports() -> None:
    exported = exported_metric_names()
    for e in exprs():
        assert not metric_names(e) - exported, e


def test_covers_what_an_operator_watches() -> None:
    used = set().union(*(metric_names(e) for e in exprs()))
    wanted = {
        *("vodedge_requests_total", "vodedge_response_bytes_total"),
        *("vodedge_upstream_requests_total", "vodedge_upstream_first_byte_seconds_bucket"),
        *("vodedge_upstream_fetch_seconds_bucket", "vodedge_fills_in_flight"),
        *("vodedge_disk_capacity_bytes", "vodedge_disk_object_bytes", "vodedge_disk_up"),
        *("vodedge_evictions_total", "vodedge_checksum_failures_total", "vodedge_timeouts_total"),
        *("vodedge_open_connections", "vodedge_process_cpu_seconds_total"),
        *("vodedge_process_resident_memory_bytes", "vodedge_prefill_bytes_total"),
        *("vodedge_prefill_files_total", "vodedge_heartbeat_total"),
        *("vodedge_worker_restarts_total", "vodedge_draining"),
    }
    assert not wanted - used, wanted - used
    quantiles = {float(q) for q in re.findall(r"histogram_quantile\((0\.\d+)", " ".join(exprs()))}
    assert quantiles == {0.5, 0.99}


def test_prometheus_parses_every_query(tmp_path: Path) -> None:
    r = promtool_check_exprs(exprs(), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
