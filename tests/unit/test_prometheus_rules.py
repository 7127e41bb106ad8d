"""deploy/prometheus: the scrape config and alert rules are valid and name real metrics.

Their structure is checked here; ``promtool`` (Debian's ``prometheus`` package,
installed by the test when missing, as root) also checks the config and rules as
Prometheus itself reads them, and runs ``alerts.test.yml``'s unit tests: each rule
fires on the series it is meant for, with its labels and annotations, and not on
the others.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics.exporter import EXPORTED_METRICS
from tests.support_debian import debian_binary

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
SEVERITIES = {"critical", "warning", "info"}
#: Suffixes the text format adds to a family's samples.
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _family(sample: str) -> str:
    for suffix in SUFFIXES:
        if sample.endswith(suffix) and sample.removesuffix(suffix) in EXPORTED_METRICS:
            return sample.removesuffix(suffix)
    return sample


def test_every_rule_has_a_severity_a_duration_and_words_for_the_operator() -> None:
    rules = _rules()

    assert {rule["alert"] for rule in rules} == {
        "BatchlineHalted",
        "BatchlineBacklogOld",
        "BatchlineBatchStuck",
        "BatchlineCapSaturated",
        "BatchlineFailuresRising",
        "BatchlineNotificationsStuck",
        "BatchlineCountsStale",
        "BatchlineExporterDown",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_rules_name_only_metrics_the_exporter_yields() -> None:
    named = {
        _family(name) for rule in _rules() for name in re.findall(r"batchline_\w+", rule["expr"])
    }

    assert named and named <= EXPORTED_METRICS, named - EXPORTED_METRICS


def test_the_scrape_config_loads_the_rules_and_scrapes_the_exporter_port() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())

    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "batchline"  # BatchlineExporterDown's up{job="batchline"}
    assert job["static_configs"][0]["targets"] == ["batchline-exporter:9808"]


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ],
)
def test_promtool_accepts_the_config_and_the_rules_pass_their_tests(args: list[str]) -> None:
    promtool = debian_binary("promtool", "prometheus")

    checked = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
