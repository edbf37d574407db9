"""firmware-config/prometheus/vodedge-origin-alerts.yml: structure, metric names the origin
exports, the alerts table of docs/origin.md, Prometheus's parser (promtool check rules) and the
alerts' behaviour on made-up series (promtool test rules)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.tools import (
    ORIGIN_ALERTS,
    REPO,
    assert_alert_rules_well_formed,
    expect_alerts,
    metric_names,
    origin_exported_metric_names,
    promtool_check_rules,
    run,
    tool,
    write_rules_without_annotations,
)

DOC = yaml.safe_load(ORIGIN_ALERTS.read_text())
RULES: list[dict[str, Any]] = [r for g in DOC["groups"] for r in g["rules"]]
RUNBOOK = re.compile(r"^docs/origin\.md#([a-z0-9-]+)$")
ORIGIN_DOC = REPO / "docs" / "origin.md"


def test_structure() -> None:
    assert_alert_rules_well_formed(DOC, r"VodedgeOrigin[A-Z][A-Za-z]+", RUNBOOK)


def test_every_metric_is_one_the_origin_exports(tmp_path: Path) -> None:
    exported = origin_exported_metric_names(tmp_path)
    for r in RULES:
        unknown = metric_names(r["expr"]) - exported
        assert not unknown, f"{r['alert']} uses metrics the origin does not export: {unknown}"


def test_promtool_parses_the_rules() -> None:
    promtool_check_rules(ORIGIN_ALERTS, len(RULES))


def documented() -> dict[str, str]:
    """Alert name -> expression, from the alerts table of docs/origin.md."""
    text = ORIGIN_DOC.read_text().split("**Alerts worth having**", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| [^|]*`(VodedgeOrigin\w+)`[^|]* \| `([^`]+)` \|", text, re.MULTILINE)
    return dict(rows)


def test_the_docs_table_lists_every_rule_with_its_expression() -> None:
    by_name = {r["alert"]: " ".join(r["expr"].split()) for r in RULES}
    assert documented() == by_name


def test_runbook_anchors_exist() -> None:
    anchors = set(re.findall(r'<a id="([^"]+)"', ORIGIN_DOC.read_text()))
    for r in RULES:
        m = RUNBOOK.match(r["annotations"]["runbook"])
        assert m and m[1] in anchors, f"{r['alert']}: no anchor {r['annotations']['runbook']}"


# --- behaviour: promtool test rules on made-up series -------------------------------------------

SERVE = {"instance": "origin1:8081", "job": "vodedge-origin"}
WORKER = {"instance": "127.0.0.1:9210", "job": "vodedge-origin-worker"}
WORKER1 = {"instance": "127.0.0.1:9211", "job": "vodedge-origin-worker"}


def series(name: str, values: str, target: dict[str, str] = SERVE, **labels: str) -> dict[str, str]:
    lab = ", ".join(f'{k}="{v}"' for k, v in {**target, **labels}.items())
    return {"series": f"{name}{{{lab}}}", "values": values}


expect = expect_alerts


def firing(
    severity: str = "warning", target: dict[str, str] = SERVE, **labels: str
) -> dict[str, str]:
    return {**target, "severity": severity, **labels}


def jobs(leased: int) -> list[dict[str, str]]:
    return [
        series("vodedge_origin_jobs", "3x200", kind="encode_chunk", state="queued"),
        series("vodedge_origin_jobs", f"{leased}x200", kind="encode_chunk", state="leased"),
    ]


CASES: list[tuple[list[dict[str, str]], list[dict[str, Any]]]] = [
    (
        [series("up", "1 1 0x10")],
        [expect(3, "VodedgeOriginDown"), expect(5, "VodedgeOriginDown", firing("critical"))],
    ),
    (
        [series("up", "1 1 0x10", WORKER), series("up", "1x12", WORKER1)],
        [
            expect(5, "VodedgeOriginWorkerDown"),
            expect(8, "VodedgeOriginWorkerDown", firing(target=WORKER)),
            expect(8, "VodedgeOriginNoWorkers"),
        ],
    ),
    (
        [series("up", "1 1 0x10", WORKER), series("up", "1 1 0x10", WORKER1)],
        [
            expect(
                8,
                "VodedgeOriginWorkerDown",
                firing(target=WORKER),
                firing(target=WORKER1),
            ),
            expect(8, "VodedgeOriginNoWorkers", {"job": WORKER["job"], "severity": "critical"}),
        ],
    ),
    (
        [
            series("vodedge_origin_process_start_time_seconds", "1000x5 1400x30"),
            series("vodedge_origin_process_start_time_seconds", "900x35", WORKER),
        ],
        [
            expect(5, "VodedgeOriginRestarted"),
            expect(8, "VodedgeOriginRestarted", firing()),
            expect(30, "VodedgeOriginRestarted"),
        ],
    ),
    (
        [series("vodedge_origin_catalog_up", "1 1 0x10")],
        [
            expect(3, "VodedgeOriginCatalogDown"),
            expect(5, "VodedgeOriginCatalogDown", firing("critical")),
        ],
    ),
    (
        [
            series("vodedge_origin_catalog_errors_total", "0x5 0+2x20"),
            series(
                "vodedge_origin_worker_catalog_errors_total",
                "0x5 0+1x20",
                WORKER,
                operation="claim",
            ),
            series(
                "vodedge_origin_worker_catalog_errors_total", "0x25", WORKER, operation="extend"
            ),
        ],
        [
            expect(5, "VodedgeOriginCatalogErrors"),
            expect(9, "VodedgeOriginCatalogErrors"),
            expect(13, "VodedgeOriginCatalogErrors", firing()),
            expect(
                13, "VodedgeOriginWorkerCatalogErrors", firing(target=WORKER, operation="claim")
            ),
        ],
    ),
    (
        [
            series(
                "vodedge_origin_http_requests_total",
                "0+600x20",
                route="/v/{key}",
                method="GET",
                status="2xx",
            ),
            series(
                "vodedge_origin_http_requests_total",
                "0x5 0+6x15",
                route="/api/v1/uploads",
                method="POST",
                status="5xx",
            ),
            series(
                "vodedge_origin_http_requests_total",
                "0+60x20",
                route="unmatched",
                method="GET",
                status="4xx",
            ),
        ],
        [
            expect(6, "VodedgeOriginServerErrors"),
            expect(10, "VodedgeOriginServerErrors", firing()),
        ],
    ),
    (
        # nothing leased and the oldest due job waits longer and longer
        [series("vodedge_origin_queue_oldest_wait_seconds", "0+60x40"), *jobs(leased=0)],
        [
            expect(12, "VodedgeOriginQueueNotTaken"),
            expect(18, "VodedgeOriginQueueNotTaken", firing("critical")),
        ],
    ),
    (
        # the same wait with a worker busy is a backlog, not a stalled queue
        [series("vodedge_origin_queue_oldest_wait_seconds", "0+60x40"), *jobs(leased=2)],
        [expect(18, "VodedgeOriginQueueNotTaken")],
    ),
    (
        # the wait climbs for an hour and a half while jobs are taken: a growing backlog
        [series("vodedge_origin_queue_oldest_wait_seconds", "0+45x100"), *jobs(leased=2)],
        [
            expect(50, "VodedgeOriginQueueBacklog"),
            expect(75, "VodedgeOriginQueueBacklog", firing()),
        ],
    ),
    (
        # a long wait that shrinks again (workers catching up) does not fire
        [series("vodedge_origin_queue_oldest_wait_seconds", "0+60x40 2400-30x60"), *jobs(leased=2)],
        [expect(75, "VodedgeOriginQueueBacklog")],
    ),
    (
        [
            series(
                "vodedge_origin_worker_jobs_total",
                "0x5 1x30",
                WORKER,
                kind="probe",
                outcome="failed",
            ),
            series(
                "vodedge_origin_worker_jobs_total",
                "0+3x35",
                WORKER,
                kind="encode_chunk",
                outcome="retried",
            ),
        ],
        [
            expect(5, "VodedgeOriginTitlesFailing"),
            expect(8, "VodedgeOriginTitlesFailing", firing(target=WORKER, kind="probe")),
        ],
    ),
    (
        [
            series(
                "vodedge_origin_worker_tool_timeouts_total", "0x5 1x30", WORKER, kind="encode_chunk"
            )
        ],
        [
            expect(5, "VodedgeOriginToolTimeouts"),
            expect(8, "VodedgeOriginToolTimeouts", firing(target=WORKER, kind="encode_chunk")),
        ],
    ),
    (
        [
            series(
                "vodedge_origin_worker_jobs_total",
                "0x5 1 2 3 4 5 6x20",
                WORKER,
                kind="encode_chunk",
                outcome="lost_lease",
            ),
        ],
        [
            expect(7, "VodedgeOriginLeasesLost"),
            expect(20, "VodedgeOriginLeasesLost", firing(target=WORKER)),
        ],
    ),
    (
        [
            series(
                "vodedge_origin_worker_webhook_deliveries_total",
                "0+1x30",
                WORKER,
                outcome="delivered",
            ),
            series(
                "vodedge_origin_worker_webhook_deliveries_total",
                "0x5 1x25",
                WORKER,
                outcome="gave_up",
            ),
        ],
        [
            expect(5, "VodedgeOriginWebhookFailing"),
            expect(8, "VodedgeOriginWebhookFailing", firing(target=WORKER, outcome="gave_up")),
        ],
    ),
    (
        [
            series(
                "vodedge_origin_uploads_refused_total", "0x5 1x30", reason="insufficient_storage"
            ),
        ],
        [
            expect(5, "VodedgeOriginStorageFull"),
            expect(
                8, "VodedgeOriginStorageFull", firing("critical", reason="insufficient_storage")
            ),
            expect(8, "VodedgeOriginUploadRefusals"),
        ],
    ),
    (
        [
            series(
                "vodedge_origin_uploads_refused_total", "0x5 0+3x30", reason="checksum_mismatch"
            ),
            # a resuming client now and then is normal
            series("vodedge_origin_uploads_refused_total", "0+1x35", reason="offset_mismatch"),
        ],
        [
            expect(8, "VodedgeOriginUploadRefusals"),
            expect(25, "VodedgeOriginUploadRefusals", firing(reason="checksum_mismatch")),
        ],
    ),
    (
        [series("vodedge_origin_upload_idle_timeouts_total", "0x5 0+12x60")],
        [
            expect(15, "VodedgeOriginUploadsStalling"),
            expect(40, "VodedgeOriginUploadsStalling", firing("info")),
        ],
    ),
    (
        [series("vodedge_origin_janitor_errors_total", "0x60 1x60 2x60 3x60")],
        [
            expect(50, "VodedgeOriginJanitorFailing"),
            expect(200, "VodedgeOriginJanitorFailing", firing()),
        ],
    ),
]


def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    covered = {e["alertname"] for _, evals in CASES for e in evals if e["exp_alerts"]}
    assert covered == {r["alert"] for r in RULES}, "every alert needs a case where it fires"
    write_rules_without_annotations(DOC, tmp_path)
    tests = [{"interval": "1m", "input_series": s, "alert_rule_test": e} for s, e in CASES]
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run([tool("promtool"), "test", "rules", str(tmp_path / "test.yml")])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("alert", sorted(r["alert"] for r in RULES))
def test_annotations_render(alert: str, tmp_path: Path) -> None:
    """Prometheus's template engine accepts every annotation (promtool check rules parses the
    expression only, the templates at evaluation)."""
    [rule] = [r for r in RULES if r["alert"] == alert]
    cases = [(s, e) for s, evals in CASES for e in evals if e["alertname"] == alert]
    inputs, first = next((s, e) for s, e in cases if e["exp_alerts"])
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "one", "rules": [rule]}]})
    )
    spec = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": [first]}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run([tool("promtool"), "test", "rules", str(tmp_path / "test.yml")])
    # The only difference promtool may report is the annotations we left out of exp_alerts;
    # a template error would show as "error executing template" or an empty annotation.
    out = r.stdout + r.stderr
    assert "error executing template" not in out and "<error expanding template" not in out, out
    assert "runbook" in out and "summary" in out, out
