"""/metrics exposes Prometheus text, and request metrics move with traffic, labelled by
route template (never by raw path with ids)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import tenant_label
from tests.support.helpers import ADMIN_KEY, TenantCredentials

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _sample(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics", headers=ADMIN).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_request_metrics_move_with_traffic(client: TestClient, tenant_a: TenantCredentials) -> None:
    labels = {"method": "GET", "route": "/v1/me", "status": "200"}
    before = _sample(client, "ragkb_http_requests_total", **labels)
    for _ in range(3):
        assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200
    assert _sample(client, "ragkb_http_requests_total", **labels) == before + 3
    count = _sample(
        client, "ragkb_http_request_duration_seconds_count", method="GET", route="/v1/me"
    )
    assert count >= 3


def test_raw_paths_never_become_labels(client: TestClient, admin_headers: dict[str, str]) -> None:
    client.get("/v1/admin/tenants/some-unique-slug-123", headers=admin_headers)
    client.get("/no/such/path/abc")
    text = client.get("/metrics", headers=ADMIN).text
    assert "some-unique-slug-123" not in text
    assert "/no/such/path/abc" not in text
    assert 'route="/v1/admin/tenants/{tenant}"' in text


def test_tenant_label_is_a_placeholder_unless_enabled() -> None:
    assert tenant_label("acme", enabled=False) == "-"
    assert tenant_label("acme", enabled=True) == "acme"
    assert tenant_label(None, enabled=True) == "-"
