"""firmware-config/grafana/vodedge-origin.json: loads, every panel is described, filters on the
chosen origin and workers, and queries metrics the origin exports with PromQL that Prometheus
parses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.ops.tools import (
    ORIGIN_DASHBOARD,
    assert_panels_do_not_overlap,
    dashboard_exprs,
    metric_names,
    origin_exported_metric_names,
    promtool_check_exprs,
)

DASH: dict[str, Any] = json.loads(ORIGIN_DASHBOARD.read_text())
PANELS: list[dict[str, Any]] = [p for p in DASH["panels"] if p["type"] != "row"]
ROWS: list[dict[str, Any]] = [p for p in DASH["panels"] if p["type"] == "row"]
DS_UID = "${datasource}"
# Grafana's variables, replaced by values Prometheus accepts
VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
    "$worker": ".*",
}
# serve's instances, the workers', or both (the process panels)
FILTERS = ('instance=~"$instance"', 'instance=~"$worker"', 'instance=~"$instance|$worker"')


def exprs() -> list[str]:
    return dashboard_exprs(DASH, VARIABLES)


def test_variables() -> None:
    variables = {v["name"]: v for v in DASH["templating"]["list"]}
    assert set(variables) == {"datasource", "instance", "worker"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "worker"):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"]["uid"] == DS_UID
        assert v["multi"] and v["includeAll"] and v["allValue"] == ".*"
        assert re.fullmatch(r"label_values\(\w+, instance\)", v["definition"])
        assert v["query"]["query"] == v["definition"]
    assert 36 <= DASH["schemaVersion"] <= 41
    assert DASH["uid"] == "vodedge-origin"


def test_variable_metrics_come_from_the_right_process(tmp_path: Path) -> None:
    variables = {v["name"]: v for v in DASH["templating"]["list"]}
    serve = re.search(r"\((\w+),", variables["instance"]["definition"])
    worker = re.search(r"\((\w+),", variables["worker"]["definition"])
    assert serve and worker
    assert serve[1] == "vodedge_origin_catalog_up"  # only serve registers the catalog gauges
    assert worker[1].startswith("vodedge_origin_worker_")
    assert {serve[1], worker[1]} <= origin_exported_metric_names(tmp_path)


def test_every_panel_is_titled_described_and_filtered() -> None:
    assert ROWS and all(r["title"].strip() for r in ROWS)
    ids = [p["id"] for p in DASH["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    titles = [p["title"] for p in PANELS]
    assert len(titles) == len(set(titles)), "panel titles repeat"
    for p in PANELS:
        assert p["title"].strip() and p["description"].strip(), p["id"]
        assert p["datasource"]["uid"] == DS_UID, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DS_UID and t["refId"], p["title"]
            assert any(f in t["expr"] for f in FILTERS), (p["title"], t["expr"])
            # worker metrics are filtered on the workers, serve's on serve
            worker_metric = "vodedge_origin_worker_" in t["expr"]
            if worker_metric:
                assert 'instance=~"$worker"' in t["expr"], (p["title"], t["expr"])
            elif "vodedge_origin_process_" not in t["expr"] and "up{" not in t["expr"]:
                assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])


def test_panels_do_not_overlap() -> None:
    assert_panels_do_not_overlap(DASH)


def test_every_metric_is_one_the_origin_exports(tmp_path: Path) -> None:
    exported = origin_exported_metric_names(tmp_path)
    for e in exprs():
        assert not metric_names(e) - exported, e


def test_covers_what_an_operator_watches() -> None:
    used = set().union(*(metric_names(e) for e in exprs()))
    wanted = {
        *("vodedge_origin_jobs", "vodedge_origin_queue_oldest_wait_seconds"),
        *("vodedge_origin_worker_jobs_total", "vodedge_origin_worker_job_duration_seconds_bucket"),
        *("vodedge_origin_worker_jobs_running", "vodedge_origin_worker_tool_timeouts_total"),
        "vodedge_origin_worker_webhook_deliveries_total",
        *("vodedge_origin_upload_received_bytes_total", "vodedge_origin_uploads_refused_total"),
        *(
            "vodedge_origin_http_requests_total",
            "vodedge_origin_http_request_duration_seconds_bucket",
        ),
        *("vodedge_origin_catalog_up", "vodedge_origin_catalog_errors_total"),
        *("vodedge_origin_served_bytes_total", "vodedge_origin_videos"),
        *(
            "vodedge_origin_process_cpu_seconds_total",
            "vodedge_origin_process_resident_memory_bytes",
        ),
    }
    assert not wanted - used, wanted - used
    text = " ".join(exprs())
    quantiles = {float(q) for q in re.findall(r"histogram_quantile\((0\.\d+)", text)}
    assert quantiles == {0.5, 0.99}
    # job durations by kind and request latency by route, from the histograms
    assert "sum by (kind, le) (rate(vodedge_origin_worker_job_duration_seconds_bucket" in text
    assert "sum by (route, le) (rate(vodedge_origin_http_request_duration_seconds_bucket" in text


def test_prometheus_parses_every_query(tmp_path: Path) -> None:
    r = promtool_check_exprs(exprs(), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
