"""Helpers for cloud delivery tests: credentials, cloud destinations, and reading back
what Waypost wrote, with the Azure SDK and with DuckDB (the way a lakehouse would)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.delivery.support import BASE, Sender
from tests.support import Org


def new_container(azurite: Azurite) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(azurite.connection_string())
    container = service.get_container_client(f"c{uuid.uuid4().hex[:20]}")
    container.create_container()
    return container


def credential(org: Org, strategy: str, env_id: str | None = None, **fields: Any) -> str:
    created = org.client().post(
        f"{BASE}/authcredentials",
        json={
            "environmentId": env_id or org.dev,
            "name": f"{strategy} {uuid.uuid4().hex[:6]}",
            "authStrategy": strategy,
            **fields,
        },
    )
    assert created.status_code == 201, created.text
    credential_id: str = created.json()["payload"]["authCredential"]["id"]
    return credential_id


def shared_key(org: Org, key: str = ACCOUNT_KEY) -> str:
    return credential(org, "AzureSharedKey", accountKey=key)


def cloud_destination(
    org: Org,
    container: str,
    credential_id: str | None,
    *,
    prefix: str | None = "waypost/",
    account: str = ACCOUNT,
    delivery: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings: dict[str, Any] = {"storageAccountName": account, "containerName": container}
    if prefix is not None:
        settings["fileNamePrefix"] = prefix
    body: dict[str, Any] = {
        "name": f"Lakehouse {uuid.uuid4().hex[:6]}",
        "cloudProviderSettings": {
            "typeId": "azure",
            "productId": "databricks",
            "settings": settings,
        },
    }
    if credential_id is not None:
        body["authCredential"] = credential_id
    if delivery is not None:
        body["delivery"] = delivery
    created = org.client().post(f"{BASE}/environments/{org.dev}/destinations", json=body)
    assert created.status_code == 201, created.text
    destination: dict[str, Any] = created.json()["payload"]["destination"]
    return destination


def send_ok(sender: Sender, body: dict[str, Any]) -> str:
    """Sends; returns the one log id."""
    answer = sender.send(body)
    assert answer.status_code == 200, answer.text
    logs = answer.json()["Meta"]["Logs"]
    assert len(logs) == 1
    log_id: str = logs[0]["ID"]
    return log_id


def blobs(container: ContainerClient) -> dict[str, bytes]:
    """Every blob's name and content (verify probes included)."""
    return {
        b.name: container.download_blob(b.name).readall()
        for b in container.list_blobs(include=["metadata"])
    }


def wait_blobs(container: ContainerClient, count: int, timeout: float = 30.0) -> dict[str, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        found = blobs(container)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} blobs in {timeout} s"
        time.sleep(0.05)


def duckdb_rows(files: dict[str, bytes], directory: Path, reader: str) -> list[dict[str, Any]]:
    """What DuckDB reads from the files (written out as a lakehouse would find them):
    each row's JSON, via `reader` (read_json_auto or read_ndjson_auto)."""
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    pattern = str(directory / "**" / "*")
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT to_json(t) FROM {reader}(?) AS t",  # noqa: S608 - the reader is ours
            [pattern],
        ).fetchall()
    return [json.loads(r[0]) for r in rows]


def wait_for_attempts(org: Org, log_id: str, count: int, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = org.client().get(f"{BASE}/organizations/{org.id}/logs/{log_id}")
        log: dict[str, Any] = found.json()["payload"]["result"]
        if log["attempts"]["total"] >= count:
            return log
        assert time.monotonic() < deadline, f"{log['attempts']['total']} attempts of {count}"
        time.sleep(0.05)
