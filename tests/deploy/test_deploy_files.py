"""Static checks of the deployment files: deploy/Dockerfile, deploy/Dockerfile.airflow, .dockerignore,
deploy/compose.yaml (every reference in it resolves), deploy/prometheus.yml and Grafana's provisioning and
dashboard (deploy/grafana; its PromQL parsed by ``promtool``, its metric names checked against the ones
prodtype exports; tests/deploy/test_dashboard_queries.py runs every query against a live Prometheus).
No container engine is needed (``docker compose config`` runs when the client can)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN(?!_LIFETIME)|API_KEY|PRIVATE", re.I)
# ${VAR}, ${VAR:?message} or ${VAR:-default}: the value comes from the environment or deploy/.env.
INTERPOLATION = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(?:(?::?[?-])[^}]*)?\}")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to


def dockerfile(name: str = "Dockerfile") -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    text = (DEPLOY / name).read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out, stage = [], -1
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), " ".join(args.split()), stage))
    return out


def final_stage(name: str = "Dockerfile") -> list[Instruction]:
    instructions = dockerfile(name)
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def exec_form(args: str) -> list[str]:
    parsed = yaml.safe_load(args)  # a JSON array is YAML too
    assert isinstance(parsed, list), f"expected the exec (JSON array) form, got {args!r}"
    return [str(a) for a in parsed]


def test_the_image_is_multi_stage_on_python_3_11_slim() -> None:
    froms = [i.args for i in dockerfile() if i.keyword == "FROM"]
    assert len(froms) >= 2, froms
    assert all(f.split()[0] == "python:3.11-slim" for f in froms), froms


def test_the_final_stage_runs_as_an_unprivileged_user() -> None:
    users = [i.args for i in final_stage() if i.keyword == "USER"]
    assert users, "the final stage has no USER: it would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    keywords = [i.keyword for i in final_stage()]
    assert keywords.index("USER") < keywords.index("CMD")


def test_the_image_checks_its_health_and_serves_on_all_interfaces() -> None:
    health = [i.args for i in final_stage() if i.keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "/api/v1/health" in health[0], health
    command = health[0].split(" CMD ", 1)[1]
    assert exec_form(command)[0] == "python"  # python:3.11-slim has no curl or wget
    cmd = [i.args for i in final_stage() if i.keyword == "CMD"]
    assert exec_form(cmd[-1]) == ["prodtype", "serve", "--host", "0.0.0.0"]


def test_the_image_installs_the_pinned_runtime_without_torch() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    code = "\n".join(i.args for i in dockerfile())
    assert "torch" not in code.lower()
    installs = [i.args for i in dockerfile() if i.keyword == "RUN" and "pip install" in i.args]
    assert any("pip install -c constraints.txt ." in r for r in installs), installs
    assert not any(re.search(r"\.\[[^\]]*\]", r) for r in installs), "no extras (dev, export) in the image"
    assert "playwright" not in text


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        if any(
            fnmatch.fnmatchcase(c, glob) or fnmatch.fnmatchcase(c, glob.replace("**/", ""))
            for c in candidates
        ):
            ignored = not negate
    return ignored


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.airflow"])
def test_what_the_image_copies_exists_and_is_in_the_build_context(name: str) -> None:
    patterns = dockerignore()
    copies = [i.args for i in dockerfile(name) if i.keyword in ("COPY", "ADD")]
    sources = []
    for args in copies:
        words = shlex.split(args)
        if any(w.startswith("--from=") for w in words):
            continue  # from another stage, not the context
        sources += [w for w in words[:-1] if not w.startswith("--")]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
        assert not _ignored(source, patterns), f".dockerignore keeps {source} out of the build context"


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    patterns = dockerignore()
    for path in (".env", "deploy/.env", ".git", ".venv", "var", "models", ".cache", "src/prodtype.egg-info"):
        assert _ignored(path, patterns), f"{path} would be sent to the docker build"
    assert not _ignored("src/prodtype/web/templates/base.html", patterns)


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
}


def one_shot(service: dict[str, Any]) -> bool:
    """A job that runs to completion (``restart: "no"``): others wait for it to exit successfully."""
    return service.get("restart") == "no"


def test_compose_runs_prodtype_postgres_mlflow_and_prometheus_with_healthchecks() -> None:
    services = compose()["services"]
    assert set(services) == {
        "prodtype",
        "postgres",
        "mlflow",
        "prometheus",
        "alertmanager",
        "grafana",
        "redis",
        *AIRFLOW_SERVICES,
    }
    for name, service in services.items():
        if one_shot(service):
            assert "healthcheck" not in service, f"{name} runs once: nothing waits for it to be healthy"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    assert services["postgres"]["image"].split(":")[1] == "16"
    assert "/api/v1/health" in " ".join(services["prodtype"]["healthcheck"]["test"])
    app = services["prodtype"]
    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = app["environment"]
    assert env["PRODTYPE_ENVIRONMENT"] == "production"
    assert env["PRODTYPE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["PRODTYPE_DATABASE_URL"]
    assert env["PRODTYPE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_mlflow_and_postgres_are_reachable_from_prodtype_only() -> None:
    """MLflow's server has no authentication: it must not be published nor share a network with anything
    but prodtype and the Airflow components (whose workers run prodtype's retrain steps, which register the
    candidates there; prodtype serves only the champions it recorded itself, see loop/ledger.py)."""
    data = compose()
    services, networks = data["services"], data["networks"]
    for name in ("mlflow", "postgres", "redis"):
        assert "ports" not in services[name], f"{name} publishes a port"
        assert services[name]["networks"] == ["backend"], name
    assert networks["backend"]["internal"] is True
    on_backend = {n for n, s in services.items() if "backend" in s.get("networks", [])}
    assert on_backend == {"prodtype", "mlflow", "postgres", "redis", *AIRFLOW_SERVICES}
    assert set(services["prodtype"]["networks"]) == {"frontend", "backend"}
    assert "frontend" in services["prometheus"]["networks"]  # it scrapes prodtype there
    # Of the Airflow components, only the API server (its UI, on 127.0.0.1) leaves the internal network.
    for name in AIRFLOW_SERVICES - {"airflow-api-server"}:
        assert services[name]["networks"] == ["backend"] and "ports" not in services[name], name
    for name, service in services.items():
        for port in service.get("ports", []):
            if name != "prodtype":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_compose_holds_no_secrets() -> None:
    for name, service in compose()["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping, please"
        for key, value in env.items():
            text = str(value)
            if key.endswith("_FILE") and SECRET_NAME.search(key):
                # a secret read from a file: a compose secret, mounted under /run/secrets
                assert text.startswith("/run/secrets/") and text.removeprefix("/run/secrets/") in service.get(
                    "secrets", []
                ), f"{name}.{key} must name a compose secret of the service: /run/secrets/<name>"
            elif SECRET_NAME.search(key):
                assert INTERPOLATION.fullmatch(text), (
                    f"{name}.{key} must come from the environment: ${{{key}}}"
                )
                assert ":-" not in text, f"{name}.{key} must not have a default value"
            userinfo = re.search(r"://[^/@\s]*:([^@/\s]+)@", text)
            if userinfo:
                assert INTERPOLATION.fullmatch(userinfo.group(1)), f"{name}.{key} has a password in its URL"


def test_prometheus_scrapes_the_metrics_of_prodtype() -> None:
    services = compose()["services"]
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prodtype"]["metrics_path"] == "/metrics"
    assert jobs["prodtype"]["static_configs"][0]["targets"] == ["prodtype:8000"]


def test_prometheus_and_prodtype_share_the_metrics_token_and_nothing_else_does() -> None:
    data = compose()
    services = data["services"]
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    job = {job["job_name"]: job for job in config["scrape_configs"]}["prodtype"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
    assert services["prodtype"]["environment"]["PRODTYPE_METRICS_TOKEN_FILE"] == "/run/secrets/metrics_token"
    holders = {name for name, service in services.items() if "metrics_token" in service.get("secrets", [])}
    assert holders == {"prodtype", "prometheus"}
    source = DEPLOY / data["secrets"]["metrics_token"]["file"]
    assert source.parent == DEPLOY / "secrets" and _git_ignored(source), "the token file must stay out of git"
    # the Airflow workers share prodtype's settings anchor, not its token
    assert "PRODTYPE_METRICS_TOKEN_FILE" not in services["airflow-worker"]["environment"]


def _compose_client() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker client"
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else "the docker client has no compose plugin"


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    reason = _compose_client()
    if reason:
        pytest.skip(f"docker compose config not run: {reason}")
    env = {name: "compose-config-check-" + "x" * 32 for name in required_settings()}
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


# --- every reference in compose.yaml resolves -------------------------------------------------------------

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def env_example() -> tuple[set[str], set[str]]:
    """The settings deploy/env.example names: (to set, optional ones shown commented out)."""
    required, optional = set(), set()
    for line in (DEPLOY / "env.example").read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=.*", line.strip())
        if match:
            (optional if match.group(1) else required).add(match.group(2))
    return required, optional


def required_settings() -> set[str]:
    return env_example()[0]


def interpolations(value: object) -> list[tuple[str, str]]:
    """(name, operator) of each ${NAME...} in a compose value: operator '?' required, '-' defaulted, ''."""
    text = json.dumps(value)
    return [
        (m.group(1), m.group(2) or "")
        for m in re.finditer(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?::?([?-]))?", text)
    ]


def test_every_setting_compose_reads_is_in_env_example() -> None:
    required, optional = env_example()
    seen: dict[str, set[str]] = {}
    for name, op in interpolations(compose()):
        seen.setdefault(name, set()).add(op)
    for name, ops in seen.items():
        if "?" in ops or "" in ops:
            assert name in required, f"compose.yaml needs {name}: set it (uncommented) in deploy/env.example"
        else:
            assert name in required | optional, f"{name} (optional) is not shown in deploy/env.example"
    assert required <= set(seen), f"env.example asks for settings compose never reads: {required - set(seen)}"


def split_mount(mount: str) -> tuple[str, str]:
    """(source, target) of a short-syntax mount ``source:target[:ro|rw]`` (the source may be ``${A:-b}``)."""
    source, target = mount.removesuffix(":ro").removesuffix(":rw").rsplit(":", 1)
    return source, target


def _git_ignored(path: Path) -> bool:
    result = subprocess.run(
        ["git", "check-ignore", "-q", str(path.relative_to(REPO)) + "/"], cwd=REPO, capture_output=True
    )
    return result.returncode == 0


def test_every_service_refers_to_services_networks_volumes_and_files_that_exist() -> None:
    data = compose()
    services, networks, volumes = data["services"], set(data["networks"]), set(data["volumes"])
    for name, service in services.items():
        for other, dep in service.get("depends_on", {}).items():
            assert other in services and other != name, f"{name} depends on {other}, not a service"
            assert dep["condition"] in CONDITIONS, (name, other)
            if dep["condition"] == "service_completed_successfully":
                assert one_shot(services[other]), f"{name} waits for {other} to exit, but it keeps running"
            if dep["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other} to be healthy: no check"
        assert service.get("networks") and set(service["networks"]) <= networks, name
        for mount in service.get("volumes", []):
            source, target = split_mount(mount)
            assert target.startswith("/"), (name, mount)
            if source.startswith("${"):
                continue  # a folder of the operator's choosing (e.g. PRODTYPE_MODELS_DIR)
            if source.startswith("."):
                path = (DEPLOY / source).resolve()
                assert path.exists() or _git_ignored(path), f"{name} mounts {source}, missing from deploy/"
            else:
                assert source in volumes, f"{name} mounts the volume {source}, not declared under volumes:"
        for secret in service.get("secrets", []):
            assert secret in data.get("secrets", {}), f"{name} uses the secret {secret}, not declared"
        if "build" in service:
            build = service["build"]
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
    used = {split_mount(m)[0] for s in services.values() for m in s.get("volumes", [])}
    assert volumes <= used, f"declared but never mounted: {volumes - used}"


def _hosts_in(value: str) -> list[tuple[str, int | None]]:
    return [
        (m.group(1), int(m.group(2)) if m.group(2) else None)
        for m in re.finditer(r"://(?:[^@/\s]*@)?([a-z][a-z0-9-]*)(?::(\d+))?", value)
    ]


def test_every_url_in_the_settings_names_a_service_on_a_shared_network() -> None:
    """postgres:5432, mlflow:5000, redis:6379, airflow-api-server:8080…: each host a service the caller shares
    a network with; published or internal, its port the one the service listens on."""
    services = compose()["services"]
    listens = {
        "postgres": 5432,
        "mlflow": 5000,
        "redis": 6379,
        "airflow-api-server": 8080,
        "prometheus": 9090,
    }
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            for host, port in _hosts_in(str(value)):
                if host in ("localhost", "127"):
                    continue
                assert host in services, f"{name}.{key} points at {host}, not a service"
                shared = set(services[host]["networks"]) & set(service["networks"])
                assert shared, f"{name} cannot reach {host} ({name}.{key}): no network in common"
                assert port in (None, listens.get(host)), (
                    f"{name}.{key}: {host} listens on {listens.get(host)}"
                )
    grafana = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    for source in grafana["datasources"]:
        ((host, port),) = _hosts_in(source["url"])
        assert (host, port) == ("prometheus", 9090)
        assert set(services[host]["networks"]) & set(services["grafana"]["networks"])


def test_the_airflow_components_share_one_configuration_and_the_workers_share_prodtypes() -> None:
    services = compose()["services"]
    airflow = {name: services[name]["environment"] for name in AIRFLOW_SERVICES}
    reference = {k: v for k, v in airflow["airflow-scheduler"].items() if k.startswith("AIRFLOW__")}
    assert reference["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name, env in airflow.items():
        assert {k: v for k, v in env.items() if k.startswith("AIRFLOW__")} == reference, name
    assert reference["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
    assert reference["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
    assert reference["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
    worker, app = services["airflow-worker"], services["prodtype"]
    shared = (
        "PRODTYPE_DATABASE_URL",
        "PRODTYPE_MLFLOW_TRACKING_URI",
        "PRODTYPE_JWT_SECRET",
        "PRODTYPE_STORAGE_DIR",
    )
    for key in shared:
        assert worker["environment"][key] == app["environment"][key], key
    targets = {
        name: dict(split_mount(m)[::-1] for m in services[name]["volumes"])
        for name in ("prodtype", "airflow-worker")
    }
    for name, mounts in targets.items():  # storage shared, and the base data where PRODTYPE_DATA_DIR says
        assert mounts[app["environment"]["PRODTYPE_STORAGE_DIR"]] == "prodtype-data", name
        assert mounts[app["environment"]["PRODTYPE_DATA_DIR"]].startswith("${PRODTYPE_TRAINING_DATA"), name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-init"]["command"][-1].endswith("airflow db migrate")


def test_the_airflow_image_runs_the_pinned_airflow_with_the_dags_and_prodtypes_command_line() -> None:
    froms = [i.args.split()[0] for i in dockerfile("Dockerfile.airflow") if i.keyword == "FROM"]
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "constraints-airflow.txt").read_text(), re.M)
    assert pinned and froms[-1] == f"apache/airflow:{pinned.group(1)}-python3.11", froms
    assert froms[0] == "python:3.11-slim"  # prodtype's venv, built on the same Python as Airflow's image
    final = final_stage("Dockerfile.airflow")
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    worker = compose()["services"]["airflow-worker"]["environment"]
    cli = worker["PRODTYPE_CLI"]
    assert f"PRODTYPE_CLI={cli}" in env and cli.startswith("/opt/venv/")
    assert any(i.args == "--from=build /opt/venv /opt/venv" for i in final if i.keyword == "COPY")
    dags = worker["AIRFLOW__CORE__DAGS_FOLDER"]
    assert any(i.args == f"dags {dags}" for i in final if i.keyword == "COPY")


# --- Grafana: provisioned datasource and dashboard ----------------------------------------------------------

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "prodtype.json"
SOURCES = (REPO / "src/prodtype/serving/metrics.py", REPO / "src/prodtype/loop/alert_metrics.py")
# What the dashboard must show: request rate and latency, predictions per type, live accuracy, model version.
MUST_SHOW = {
    "prodtype_http_requests_total",
    "prodtype_http_request_duration_seconds_bucket",
    "prodtype_predictions_total",
    "prodtype_live_accuracy",
    "prodtype_model_info",
}
# Grafana's variables, as the live test and promtool get them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def with_variables(expr: str, values: dict[str, str] = GRAFANA_VARIABLES) -> str:
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable with no value here: {expr}"
    return expr


def exported_names() -> set[str]:
    """The metric names prodtype defines (serving/metrics.py, loop/alert_metrics.py), as scraped."""
    names = set()
    for source in SOURCES:
        text = source.read_text()
        for kind, name in re.findall(
            r"(Counter|Histogram|GaugeMetricFamily|CounterMetricFamily|_gauge)\(\s*\"(prodtype_\w+)\"", text
        ):
            if kind in ("Counter", "CounterMetricFamily"):
                names.add(f"{name}_total")
            elif kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bprodtype_\w+", expr))


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard_folder() -> None:
    service = compose()["services"]["grafana"]
    mounts = dict(split_mount(m) for m in service["volumes"])
    provisioning = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/prodtype.yml").read_text())["providers"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert [p["options"]["path"] for p in providers] == [mounts["./grafana/dashboards"]]
    assert all(p["type"] == "file" for p in providers)
    data = dashboard()
    assert data["uid"] and data["title"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in data["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"]), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_the_dashboard_queries_only_metrics_prodtype_exports_and_shows_what_operators_need() -> None:
    exported = exported_names()
    assert {"prodtype_http_requests_total", "prodtype_model_info", "prodtype_live_accuracy"} <= exported
    used: set[str] = set()
    for expr in dashboard_expressions():
        names = metric_names(expr)
        assert names, f"no prodtype metric in {expr}"
        assert names <= exported, f"{expr} names {names - exported}, which prodtype does not export"
        used |= names
    assert used >= MUST_SHOW, f"the dashboard does not show {MUST_SHOW - used}"
    by_type = [e for e in dashboard_expressions() if "prodtype_predictions_total" in e]
    assert any("by (prdtypecode)" in e for e in by_type), "predictions per type: by (prdtypecode)"


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    from .test_alerts import tool

    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": with_variables(expr)}
                    for i, expr in enumerate(dashboard_expressions())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(dashboard_expressions())} rules found" in result.stdout
