"""Helpers for the operations tests: system tools, exported metric names, PromQL metric names.

System tools (systemd-analyze, promtool, shellcheck) come from Debian packages that
``scripts/ensure_test_tools.sh`` installs before ``make test``; a test that needs a missing one
skips with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware-config"
ALERTS = FIRMWARE / "prometheus" / "vodedge-appliance-alerts.yml"
DASHBOARD = FIRMWARE / "grafana" / "vodedge-appliance.json"
ORIGIN_ALERTS = FIRMWARE / "prometheus" / "vodedge-origin-alerts.yml"
ORIGIN_DASHBOARD = FIRMWARE / "grafana" / "vodedge-origin.json"
SYSCTL = FIRMWARE / "sysctl.d" / "90-vodedge-appliance.conf"
UNIT = REPO / "systemd" / "vodedge-appliance.service"
INSTALL = REPO / "systemd" / "install.sh"


def tool(name: str) -> str:
    """Path of a system tool, or skip the test (scripts/ensure_test_tools.sh installs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/ensure_test_tools.sh installs it as root)")
    return path


def appliance_bin() -> str:
    """The venv's vodedge-appliance console script."""
    path = Path(sys.executable).parent / "vodedge-appliance"
    if not path.exists():
        found = shutil.which("vodedge-appliance")
        assert found, "vodedge-appliance is not installed in this environment"
        return found
    return str(path)


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run to completion; output captured as text, the exit status left to the caller."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """systemd/install.sh into the directory tree ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    return run(["bash", str(INSTALL), "--root", str(root), *args])


def install_ok(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = install(root, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def exported_metric_names() -> set[str]:
    """Every sample name the appliance's /metrics can carry (registry + system collector)."""
    from prometheus_client import REGISTRY

    import appliance.metrics as m
    import appliance.supmetrics  # noqa: F401  (registers the supervisor's metrics)

    families = [*REGISTRY.collect(), *m.SystemCollector(os.getpid()).collect()]
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
    }
    names = {"up"}
    for f in families:
        if f.name.startswith("vodedge_"):
            names.update(f.name + s for s in suffixes.get(f.type, ("",)))
    return names


def origin_exported_metric_names(tmp: Path) -> set[str]:
    """Every sample name the origin's /metrics (serve's and each worker's) can carry, with
    ``up`` (Prometheus's own); ``tmp`` holds a scratch catalog for the catalog gauges."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    from origin.catalog import SqliteCatalog
    from origin.metrics.catalog import CatalogCollector
    from origin.metrics.janitor import JanitorMetrics
    from origin.metrics.serve import NS, ServeMetrics
    from origin.metrics.worker import WorkerMetrics
    from origin.pipeline.jobs import KINDS

    registry = CollectorRegistry()
    ServeMetrics(registry)
    JanitorMetrics(registry)
    WorkerMetrics(registry, KINDS)
    ProcessCollector(namespace=NS, registry=registry)
    with SqliteCatalog.open(tmp / "catalog.db") as catalog:
        registry.register(CatalogCollector(catalog, KINDS))
        families = list(registry.collect())
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {"up"} | {f.name + s for f in families for s in suffixes.get(f.type, ("",))}


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {
    *("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"),
    *("and", "or", "unless", "atan2", "inf", "nan"),
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    e = _STRINGS.sub('""', expr)
    e = _MATCHERS.sub(" ", e)
    e = _RANGES.sub(" ", e)
    e = _GROUPING.sub(" ", e)
    return {
        m.group(1)
        for m in _IDENT.finditer(e)
        if m.group(2) is None and m.group(1).lower() not in _KEYWORDS
    }


def promtool_check_exprs(exprs: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` over recording rules made of ``exprs``: Prometheus's own parser."""
    rules = [{"record": f"check:expr{i}", "expr": e} for i, e in enumerate(exprs)]
    f = tmp / "exprs.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    return run([tool("promtool"), "check", "rules", str(f)])


def assert_panels_do_not_overlap(dash: dict[str, Any]) -> None:
    """No two panels of a Grafana dashboard share a grid cell; none is wider than the grid."""
    cells: dict[tuple[int, int], str] = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[x, y]}"
                cells[x, y] = p["title"]


def write_rules_without_annotations(doc: dict[str, Any], tmp: Path) -> Path:
    """The rule file with annotations removed, for ``promtool test rules`` (annotations are
    checked on their own; promtool would compare their rendered text too)."""
    stripped = {
        "groups": [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in doc["groups"]
        ]
    }
    path = tmp / "rules.yml"
    path.write_text(yaml.safe_dump(stripped))
    return path


def dashboard_exprs(dash: dict[str, Any], variables: dict[str, str]) -> list[str]:
    """Every PromQL query of a Grafana dashboard (panel targets and annotation queries), with
    its variables replaced by values Prometheus accepts; an unknown variable fails."""
    raw = [t["expr"] for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]
    raw += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    out = []
    for e in raw:
        for var, value in variables.items():
            e = e.replace(var, value)
        assert "$" not in e, f"unknown variable in {e}"
        out.append(e)
    return out


_DURATION = re.compile(r"^\d+[smhd]$")


def assert_alert_rules_well_formed(
    doc: dict[str, Any], name: str, runbook: re.Pattern[str]
) -> None:
    """Groups and rules complete, alert names unique and matching ``name`` (a regex), a ``for``
    duration, a known severity, a summary, a description and a runbook matching ``runbook``."""
    assert doc["groups"] and all(g["name"] and g["rules"] for g in doc["groups"])
    rules = [r for g in doc["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for r in rules:
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert re.fullmatch(name, r["alert"]), r["alert"]
        assert _DURATION.match(str(r["for"])), r["alert"]
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]
        ann = r["annotations"]
        assert ann["summary"].strip() and ann["description"].strip(), r["alert"]
        assert runbook.match(ann["runbook"]), r["alert"]


def expect_alerts(minutes: int, alert: str, *alerts: dict[str, str]) -> dict[str, Any]:
    """One ``alert_rule_test`` entry of ``promtool test rules``: at ``minutes``, ``alert`` fires
    with exactly these label sets (none: it does not fire)."""
    return {
        "eval_time": f"{minutes}m",
        "alertname": alert,
        "exp_alerts": [{"exp_labels": a} for a in alerts],
    }


def promtool_check_rules(path: Path, count: int) -> None:
    """``promtool check rules`` accepts the file and finds ``count`` rules in it."""
    r = run([tool("promtool"), "check", "rules", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {count} rules found" in r.stdout
