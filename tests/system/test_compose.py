"""compose.yaml, checked without a Docker engine: it is valid against the Compose
specification's JSON schema, every service the code needs is there, images are pinned,
long-running services have health checks and start in order, the environment names match
Settings, workers are split by queue, vLLM is only in the gpu profile (CPU-only runs the
rest with the embedded generator), and no secret is written into the file."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import ENV_NAMES, ServerSettings, Settings
from tests.support.helpers import REPO_ROOT

COMPOSE = REPO_ROOT / "compose.yaml"
REQUIRED = {
    "postgres", "redis", "qdrant", "vllm", "migrate", "api", "worker-ingest", "worker-light"
}  # fmt: skip
ONE_SHOT = {"migrate"}
GPU_ONLY = {"vllm"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_every_needed_service_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= REQUIRED


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "image" in service:
            image = service["image"]
            tag = image.rsplit(":", 1)[1] if ":" in image else ""
            assert re.search(r"\d", tag) and tag != "latest", f"{name}: unpinned image {image}"
        else:
            assert "build" in service, f"{name}: neither image nor build"


def test_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert "healthcheck" in service, f"{name} has no health check"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert rule["condition"] == expected, f"{name} -> {dependency}"


def test_environment_names_match_settings(compose: dict[str, Any]) -> None:
    fields = {f"RAGKB_{name.upper()}" for name in ENV_NAMES}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key in env:
            if key.startswith("RAGKB_"):
                assert key in fields, f"{name}: {key} is not a Settings field"
    api_env = compose["services"]["api"]["environment"]
    for needed in (
        "RAGKB_DATABASE_URL",
        "RAGKB_REDIS_URL",
        "RAGKB_QDRANT_URL",
        "RAGKB_LLM_BASE_URL",
        "RAGKB_TASK_MODE",
    ):
        assert needed in api_env, f"api misses {needed}"
    assert api_env["RAGKB_TASK_MODE"] == "celery"


def test_api_port_matches_the_default_port(compose: dict[str, Any]) -> None:
    port = ServerSettings.model_fields["port"].default
    assert f"{port}:{port}" in compose["services"]["api"]["ports"]


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY)$")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secretish.search(key) and value:
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"
    assert "change-me" not in COMPOSE.read_text()


def test_env_example_lists_the_required_secrets() -> None:
    text = COMPOSE.read_text()
    example = (REPO_ROOT / ".env.example").read_text()
    for variable in set(re.findall(r"\$\{([A-Z_]+):\?", text)):
        assert f"{variable}=" in example, f".env.example misses {variable}"


def _compose_spec_schema() -> Path | None:
    """The Compose specification's JSON schema as shipped by docker-compose 1.29.2 (pure
    Python wheel, installed with --no-deps by `make install` only for this file; its own
    dependencies would conflict with ours, and nothing imports it)."""
    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "config" / "compose_spec.json"
        if path.is_file():
            return path
    return None


def test_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    schema_path = _compose_spec_schema()
    if schema_path is None:
        pytest.skip("docker-compose==1.29.2 (for its compose_spec.json) is not installed")
    import jsonschema_rs

    schema = json.loads(schema_path.read_text())
    # The top-level `name` joined the specification after this schema (2021) was cut.
    document = {k: v for k, v in compose.items() if k != "name"}
    validator = jsonschema_rs.validator_for(schema)  # the draft its $schema names
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors
    # It does reject what is not Compose (the check is not vacuous).
    broken = json.loads(json.dumps(document))
    broken["services"]["api"]["depends_on"]["redis"] = {"condition": "healthy"}
    broken["services"]["worker-light"]["healthchek"] = {}
    assert len(list(validator.iter_errors(broken))) >= 2


def test_workers_are_split_by_queue(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ingest = services["worker-ingest"]["command"]
    light = services["worker-light"]["command"]
    assert ingest[:2] == ["ragkb", "worker"] and ingest[ingest.index("--queues") + 1] == "heavy"
    assert light[:2] == ["ragkb", "worker"] and light[light.index("--queues") + 1] == "light"
    assert "ragkb-ingest@" in services["worker-ingest"]["healthcheck"]["test"][1]
    assert "ragkb-light@" in services["worker-light"]["healthcheck"]["test"][1]


def test_cpu_only_runs_everything_but_vllm(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        expected = ["gpu"] if name in GPU_ONLY else None
        assert service.get("profiles") == expected, name
        # A service that always runs must not wait for one that only runs with a profile.
        if name not in GPU_ONLY:
            assert not set(service.get("depends_on") or {}) & GPU_ONLY, name
    # The generator comes from .env: unset (CPU only) = the embedded extractive generator.
    api_env = services["api"]["environment"]
    assert api_env["RAGKB_LLM_BASE_URL"] == "${RAGKB_LLM_BASE_URL:-}"
    assert Settings(_env_file=None, llm={"base_url": ""}).llm.base_url == ""
    example = (REPO_ROOT / ".env.example").read_text()
    assert "RAGKB_LLM_BASE_URL=http://vllm:8000/v1" in example
    assert "COMPOSE_PROFILES=gpu" in example


def test_variables_passed_through_are_settings_fields() -> None:
    fields = {f"RAGKB_{name.upper()}" for name in ENV_NAMES}
    for variable in re.findall(r"\$\{(RAGKB_[A-Z0-9_]+)", COMPOSE.read_text()):
        assert variable in fields, f"{variable} is not a Settings field"
