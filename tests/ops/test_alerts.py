"""The alerting rules: structure, metric names, Prometheus's own parser (promtool check rules)
and the alerts' behaviour on made-up series (promtool test rules)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.tools import (
    ALERTS,
    REPO,
    assert_alert_rules_well_formed,
    expect_alerts,
    exported_metric_names,
    metric_names,
    promtool_check_rules,
    run,
    tool,
    write_rules_without_annotations,
)

DOC = yaml.safe_load(ALERTS.read_text())
RULES: list[dict[str, Any]] = [r for g in DOC["groups"] for r in g["rules"]]
RUNBOOK = re.compile(r"^docs/operations\.md#([a-z0-9-]+)$")


def test_structure() -> None:
    assert_alert_rules_well_formed(DOC, r"Vodedge[A-Z][A-Za-z]+", RUNBOOK)


def test_requested_alerts_are_there() -> None:
    by_name = {r["alert"]: r for r in RULES}
    assert "vodedge_disk_up == 0" in by_name["VodedgeDiskFailed"]["expr"]
    assert (
        "changes(vodedge_start_time_seconds[15m]) > 0" in by_name["VodedgeDaemonRestarted"]["expr"]
    )
    drain = by_name["VodedgeDrainingTooLong"]
    assert drain["for"] == "6h" and drain["labels"]["severity"] == "info"
    exprs = " ".join(r["expr"] for r in RULES)
    for name in (
        "up",
        "vodedge_response_bytes_total",
        "vodedge_upstream_requests_total",
        "vodedge_worker_restarts_total",
        "vodedge_heartbeat_total",
        "vodedge_checksum_failures_total",
        "vodedge_disk_lmdb_bytes",
        "vodedge_disk_capacity_bytes",
        "vodedge_draining",
    ):
        assert name in metric_names(exprs), name


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{x="b c", y=~"d|e"}[5m])) / on (i) group_left b_total'
        " > 10e6 and changes(up[1h:1m] offset 1d) == 0 unless sum(c) without (z)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up", "c"}


def test_every_metric_is_one_the_appliance_exports() -> None:
    exported = exported_metric_names()
    for r in RULES:
        unknown = metric_names(r["expr"]) - exported
        assert not unknown, f"{r['alert']} uses metrics the appliance does not export: {unknown}"


def test_promtool_parses_the_rules() -> None:
    promtool_check_rules(ALERTS, len(RULES))


def test_runbook_sections_exist() -> None:
    doc = REPO / "docs" / "operations.md"
    if not doc.exists():
        pytest.skip("docs/operations.md is not written yet")
    text = doc.read_text()
    # explicit <a id="..."> anchors, and the ids GitHub gives headings
    anchors = set(re.findall(r'<a id="([^"]+)"', text)) | {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
        for h in re.findall(r"^#+\s+(.+?)\s*$", text, re.MULTILINE)
    }
    for r in RULES:
        m = RUNBOOK.match(r["annotations"]["runbook"])
        assert m and m[1] in anchors, f"{r['alert']}: no anchor {r['annotations']['runbook']}"


# --- behaviour: promtool test rules on made-up series -------------------------------------------

INST = {"instance": "edge1:8090", "job": "vodedge-appliance"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    lab = ", ".join(f'{k}="{v}"' for k, v in {**INST, **labels}.items())
    return {"series": f"{name}{{{lab}}}", "values": values}


def ramp(*segments: tuple[float, int]) -> str:
    """A counter growing by ``step`` per sample for ``samples`` samples, segment after segment."""
    out, value, first = [], 0.0, True
    for step, samples in segments:
        start = value if first else value + step
        n = samples if first else samples - 1
        out.append(f"{start:.0f}+{step:.0f}x{n}")
        value = start + step * n
        first = False
    return " ".join(out)


expect = expect_alerts


def firing(severity: str = "warning", **labels: str) -> dict[str, str]:
    return {"instance": INST["instance"], "severity": severity, **labels}


DISK = {"disk": "/srv/vodedge/disk0"}
# Bytes hit ratio, one sample per 5 minutes: 90% for 23 h, then 30% (or 95% all day) at
# 100 MB/s; "quiet" serves 1 MB/s.
HIT_DROP = [
    series("vodedge_response_bytes_total", ramp((27e9, 276), (9e9, 24)), outcome="hit"),
    series("vodedge_response_bytes_total", ramp((3e9, 276), (21e9, 24)), outcome="miss"),
]
HIT_STEADY = [
    series("vodedge_response_bytes_total", ramp((28.5e9, 300)), outcome="hit"),
    series("vodedge_response_bytes_total", ramp((1.5e9, 300)), outcome="miss"),
]
HIT_QUIET = [
    series("vodedge_response_bytes_total", ramp((27e7, 276), (9e7, 24)), outcome="hit"),
    series("vodedge_response_bytes_total", ramp((3e7, 276), (21e7, 24)), outcome="miss"),
]
DAY_LONG = (HIT_DROP, HIT_STEADY, HIT_QUIET)
ORIGIN = {"upstream": "http://origin:8081"}

CASES: list[tuple[list[dict[str, str]], list[dict[str, Any]]]] = [
    (
        [series("up", "1 1 0x10")],
        [
            expect(4, "VodedgeTargetDown"),
            expect(8, "VodedgeTargetDown", firing("critical", job="vodedge-appliance")),
        ],
    ),
    (
        [
            series("vodedge_disk_up", "1 1 0x10", **DISK),
            series("vodedge_disk_up", "1x12", disk="/srv/vodedge/disk1"),
        ],
        [
            expect(2, "VodedgeDiskFailed"),
            expect(5, "VodedgeDiskFailed", firing(job="vodedge-appliance", **DISK)),
            expect(5, "VodedgeAllDisksFailed"),
        ],
    ),
    (
        [series("vodedge_disk_up", "1 1 0x10", **DISK)],
        [expect(5, "VodedgeAllDisksFailed", firing("critical"))],
    ),
    (
        HIT_DROP,
        [
            expect(1370, "VodedgeHitRatioDrop"),
            expect(1500, "VodedgeHitRatioDrop", firing()),
            expect(1420, "VodedgeHitRatioLow"),
            expect(1500, "VodedgeHitRatioLow", firing()),
        ],
    ),
    (HIT_STEADY, [expect(1500, "VodedgeHitRatioDrop"), expect(1500, "VodedgeHitRatioLow")]),
    (HIT_QUIET, [expect(1500, "VodedgeHitRatioDrop"), expect(1500, "VodedgeHitRatioLow")]),
    (
        # 10% of origin fetches time out
        [
            series("vodedge_upstream_requests_total", "0+100x30", result="ok", **ORIGIN),
            series(
                "vodedge_upstream_requests_total", "0+10x30", result="timeout_connect", **ORIGIN
            ),
        ],
        [expect(8, "VodedgeUpstreamErrors"), expect(25, "VodedgeUpstreamErrors", firing())],
    ),
    (
        # 404s and the worker-to-worker hop are not upstream errors
        [
            series("vodedge_upstream_requests_total", "0+100x30", result="ok", **ORIGIN),
            series("vodedge_upstream_requests_total", "0+50x30", result="not_found", **ORIGIN),
            series(
                "vodedge_upstream_requests_total",
                "0+50x30",
                result="owner_unreachable",
                upstream="peer",
            ),
        ],
        [expect(25, "VodedgeUpstreamErrors")],
    ),
    (
        [series("vodedge_start_time_seconds", "1000x5 1400x40")],
        [
            expect(5, "VodedgeDaemonRestarted"),
            expect(8, "VodedgeDaemonRestarted", firing(job="vodedge-appliance")),
            expect(30, "VodedgeDaemonRestarted"),
        ],
    ),
    (
        [series("vodedge_worker_restarts_total", "0x5 1x30")],
        [
            expect(5, "VodedgeWorkerRestarts"),
            expect(8, "VodedgeWorkerRestarts", firing(job="vodedge-appliance")),
            expect(30, "VodedgeWorkerRestarts"),
        ],
    ),
    (
        [
            series("vodedge_heartbeat_total", "0+12x10 120x20", result="ok"),
            series("vodedge_heartbeat_total", "0x10 0+12x20", result="timeout"),
        ],
        [expect(10, "VodedgeHeartbeatFailing"), expect(25, "VodedgeHeartbeatFailing", firing())],
    ),
    (
        [series("vodedge_checksum_failures_total", "0x5 3x10", **DISK)],
        [
            expect(5, "VodedgeChecksumFailures"),
            expect(8, "VodedgeChecksumFailures", firing(job="vodedge-appliance", **DISK)),
        ],
    ),
    (
        [
            series("vodedge_disk_lmdb_bytes", "100e9x20 120e9x40", **DISK),
            series("vodedge_disk_capacity_bytes", "100e9x60", **DISK),
        ],
        [
            expect(20, "VodedgeLmdbNearFull"),
            expect(45, "VodedgeLmdbNearFull"),
            expect(55, "VodedgeLmdbNearFull", firing(job="vodedge-appliance", **DISK)),
        ],
    ),
    (
        [series("vodedge_store_errors_total", "0x5 1x10", kind="map_full")],
        [expect(8, "VodedgeStoreErrors", firing(job="vodedge-appliance", kind="map_full"))],
    ),
    (
        [series("vodedge_draining", "0x10 1x420")],
        [
            expect(300, "VodedgeDrainingTooLong"),
            expect(400, "VodedgeDrainingTooLong", firing("info", job="vodedge-appliance")),
        ],
    ),
]


def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    covered = {e["alertname"] for _, evals in CASES for e in evals if e["exp_alerts"]}
    assert covered == {r["alert"] for r in RULES}, "every alert needs a case where it fires"
    write_rules_without_annotations(DOC, tmp_path)
    # Day-long cases are evaluated every 5 minutes, the others every minute.
    files = []
    for step in ("1m", "5m"):
        tests = [
            {"interval": step, "input_series": s, "alert_rule_test": e}
            for s, e in CASES
            if (s in DAY_LONG) == (step == "5m")
        ]
        spec = {"rule_files": ["rules.yml"], "evaluation_interval": step, "tests": tests}
        files.append(tmp_path / f"test-{step}.yml")
        files[-1].write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run([tool("promtool"), "test", "rules", *map(str, files)])
    assert r.returncode == 0, r.stdout + r.stderr
