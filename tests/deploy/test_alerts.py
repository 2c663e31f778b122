"""The alerting rules (deploy/prometheus/alerts.yml) and the Alertmanager configuration, checked with the
tools that will run them: ``promtool check rules|config``, ``promtool test rules`` (tests/deploy/
alerts_test.yml: every alert shown firing and silent) and ``amtool check-config``. Debian's ``prometheus``
and ``prometheus-alertmanager`` packages ship them (``.ci/run`` installs both); without them the tests are
skipped, except under ``CI=true`` where a missing tool fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
# What the issue asks operators to hear about, by alert name.
EXPECTED = {
    "ProdtypeDown",
    "ProdtypeNoModel",
    "ProdtypeHighErrorRate",
    "ProdtypeSlowRequests",
    "ProdtypeLiveAccuracyLow",
    "ProdtypeClassMixDrift",
    "ProdtypeReviewBacklogGrowing",
    "ProdtypeRetrainFailing",
    "ProdtypeAlertFiguresUnavailable",
}


def tool(name: str) -> str:
    """The tool's path; skip without it, or fail under CI=true (where .ci/run installs it)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=REPO)


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_the_rules_are_valid_and_cover_what_operators_must_hear_about() -> None:
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout
    by_name = {rule["alert"]: rule for rule in rules()}
    assert set(by_name) == EXPECTED
    for name, rule in by_name.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and len(annotations["description"]) > 100, name


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == ["../../deploy/prometheus/alerts.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == EXPECTED, EXPECTED - firing
    assert silent == EXPECTED, EXPECTED - silent


def test_the_rule_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_loads_the_rules_and_sends_to_alertmanager(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    # promtool checks that the token file exists: the compose secret, here a file of this test's own
    token_file = tmp_path / "metrics_token"
    token_file.write_text("t" * 43 + "\n")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
            job["authorization"]["credentials_file"] = str(token_file)
    for rule_file in config["rule_files"]:  # relative to the config: copied beside the checked copy
        (tmp_path / rule_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEPLOY / rule_file, tmp_path / rule_file)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = run(tool("promtool"), "check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout  # the rule file was found and read
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    # compose mounts the rule file where prometheus.yml's relative path points inside the container
    assert (
        "./prometheus/alerts.yml:/etc/prometheus/prometheus/alerts.yml:ro"
        in services["prometheus"]["volumes"]
    )
    assert config["rule_files"] == ["prometheus/alerts.yml"]
    mounted = services["alertmanager"]["volumes"]
    assert "./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in mounted
    assert services["alertmanager"]["ports"] == ["127.0.0.1:${ALERTMANAGER_PORT:-9093}:9093"]


def test_the_alertmanager_configuration_is_valid() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=ProdtypeDown", "severity=critical"], "oncall-email,webhook"),
        (["alertname=ProdtypeLiveAccuracyLow", "severity=warning"], "webhook"),
    ],
)
def test_alerts_are_routed_to_the_webhook_and_critical_ones_by_mail_too(
    labels: list[str], receivers: str
) -> None:
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_the_alertmanager_configuration_holds_no_secret() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert "smtp_auth_password" not in config["global"]
    assert config["global"]["smtp_auth_password_file"].startswith("/etc/alertmanager/secrets/")
