"""Static checks of the deployment files: deploy/Dockerfile, .dockerignore, deploy/compose.yaml and
deploy/prometheus.yml. No container engine is needed (``docker compose config`` runs when the client can)."""

from __future__ import annotations

import fnmatch
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


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
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


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
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


def test_what_the_image_copies_exists_and_is_in_the_build_context() -> None:
    patterns = dockerignore()
    copies = [i.args for i in dockerfile() if i.keyword in ("COPY", "ADD")]
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


def test_compose_runs_prodtype_postgres_mlflow_and_prometheus_with_healthchecks() -> None:
    services = compose()["services"]
    assert set(services) == {"prodtype", "postgres", "mlflow", "prometheus", "alertmanager"}
    for name, service in services.items():
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
    but prodtype (which serves only the champions it recorded itself, see loop/ledger.py)."""
    data = compose()
    services, networks = data["services"], data["networks"]
    for name in ("mlflow", "postgres"):
        assert "ports" not in services[name], f"{name} publishes a port"
        assert services[name]["networks"] == ["backend"], name
    assert networks["backend"]["internal"] is True
    on_backend = {n for n, s in services.items() if "backend" in s.get("networks", [])}
    assert on_backend == {"prodtype", "mlflow", "postgres"}
    assert set(services["prodtype"]["networks"]) == {"frontend", "backend"}
    assert "frontend" in services["prometheus"]["networks"]  # it scrapes prodtype there


def test_compose_holds_no_secrets() -> None:
    for name, service in compose()["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping, please"
        for key, value in env.items():
            text = str(value)
            if SECRET_NAME.search(key):
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
    env = {
        "POSTGRES_PASSWORD": "compose-config-check",
        "PRODTYPE_JWT_SECRET": "x" * 48,
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
