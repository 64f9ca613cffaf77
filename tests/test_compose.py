"""compose.yaml, checked without a Docker engine: every service the code needs is there,
images are pinned, long-running services have health checks and start in order, the
environment names match Settings, and no secret is written into the file."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from core.settings import Settings
from tests.helpers import REPO_ROOT

COMPOSE = REPO_ROOT / "compose.yaml"
REQUIRED = {"postgres", "redis", "qdrant", "vllm", "migrate", "api", "worker"}
ONE_SHOT = {"migrate"}


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
    fields = {f"RAGKB_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key in env:
            if key.startswith("RAGKB_"):
                assert key in fields, f"{name}: {key} is not a Settings field"
    api_env = compose["services"]["api"]["environment"]
    for needed in ("RAGKB_DATABASE_URL", "RAGKB_REDIS_URL", "RAGKB_QDRANT_URL",
                   "RAGKB_LLM_BASE_URL", "RAGKB_TASK_MODE"):
        assert needed in api_env, f"api misses {needed}"
    assert api_env["RAGKB_TASK_MODE"] == "celery"


def test_api_port_matches_the_default_port(compose: dict[str, Any]) -> None:
    port = Settings.model_fields["port"].default
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
