"""Sources and destinations to subscribe, made through their own APIs."""

from __future__ import annotations

from typing import Any

from tests.support import Org

API = "/platform/v1"


def new_source(org: Org, env_id: str, name: str = "EHR") -> dict[str, Any]:
    with org.client() as api:
        response = api.post(f"{API}/environments/{env_id}/sources", json={"name": name})
    assert response.status_code in (200, 201), response.text
    source: dict[str, Any] = response.json()["payload"]["source"]
    return source


def new_destination(org: Org, env_id: str, name: str = "Receiver") -> dict[str, Any]:
    body = {"name": name, "endpoint": "https://receiver.example.org/redox"}
    with org.client() as api:
        response = api.post(f"{API}/environments/{env_id}/destinations", json=body)
    assert response.status_code == 201, response.text
    destination: dict[str, Any] = response.json()["payload"]["destination"]
    return destination


def subscribe(
    org: Org, env_id: str, source_id: str, destination_id: str, data_model: str = "PatientAdmin"
) -> dict[str, Any]:
    body = {"source": {"id": source_id}, "destination": {"id": destination_id}}
    with org.client() as api:
        response = api.post(
            f"{API}/environments/{env_id}/subscriptions", json={**body, "dataModel": data_model}
        )
    assert response.status_code == 201, response.text
    subscription: dict[str, Any] = response.json()["payload"]["subscription"]
    return subscription
