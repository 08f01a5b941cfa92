"""Batching, beyond Redox: several messages per newline-delimited JSON file, written
whole, retried whole, each message's log pointing at its file."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.azurite import Azurite
from tests.blob.support import (
    blobs,
    cloud_destination,
    duckdb_rows,
    new_container,
    send_ok,
    shared_key,
    wait_blobs,
    wait_for_attempts,
)
from tests.delivery.support import BASE, message, new_source, subscribe, wait_log
from tests.receivers import receiving
from tests.support import Org, Server, server_for


def _batched(max_messages: int, max_seconds: int) -> dict[str, Any]:
    return {"mode": "unordered", "batch": {"maxMessages": max_messages, "maxSeconds": max_seconds}}


def _lines(content: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in content.decode().splitlines()]


def test_batches_fill_up_then_time_out_and_every_log_names_its_file(
    org: Org, azurite: Azurite, tmp_path: Path
) -> None:
    container = new_container(azurite)
    destination = cloud_destination(
        org, container.container_name, shared_key(org), delivery=_batched(5, 1)
    )
    assert destination["delivery"]["batch"] == {"maxMessages": 5, "maxSeconds": 1}
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_ids = [send_ok(source, message(n)) for n in range(12)]

    files = wait_blobs(container, 3)
    assert len(files) == 3
    day = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d")
    by_log: dict[str, str] = {}
    for name, content in files.items():
        lines = _lines(content)
        first = lines[0]["Meta"]["Logs"][0]["ID"]
        assert name == f"waypost/PatientAdmin/{day}/{first}-{len(lines)}.ndjson"
        for line in lines:
            by_log[line["Meta"]["Logs"][0]["ID"]] = name
    assert sorted(len(_lines(c)) for c in files.values()) == [2, 5, 5]
    # Each message exactly once, and the files in acceptance order.
    assert sorted(by_log) == sorted(log_ids)
    in_order = sorted(files, key=lambda name: _first(name, log_ids))
    ordered = [line["n"] for name in in_order for line in _lines(files[name])]
    assert ordered == list(range(12))

    for log_id in log_ids:
        log = wait_log(org, log_id, "succeeded")
        assert log["fileName"] == by_log[log_id]
    properties = container.get_blob_client(by_log[log_ids[0]]).get_blob_properties()
    assert properties.content_settings.content_type == "application/x-ndjson"
    assert properties.metadata["count"] == "5"

    rows = duckdb_rows(files, tmp_path, "read_ndjson_auto")
    assert len(rows) == 12
    assert sorted(r["Meta"]["Logs"][0]["ID"] for r in rows) == sorted(log_ids)


def _first(name: str, log_ids: list[str]) -> int:
    """The position of a batch file's first log among the sent ones."""
    stem = name.rsplit("/", 1)[1].removesuffix(".ndjson")
    return log_ids.index(stem.rsplit("-", 1)[0])


def test_a_failed_batch_is_retried_whole_with_the_same_messages(org: Org, azurite: Azurite) -> None:
    """The first attempt of a batch of 3 finds no container; two more messages arrive
    before the retry, which still writes exactly those 3, under the same name."""
    container = new_container(azurite)
    container.delete_container()
    destination = cloud_destination(
        org, container.container_name, shared_key(org), delivery=_batched(3, 1)
    )
    source = new_source(org)
    subscribe(org, source, destination["id"])
    first = [send_ok(source, message(n)) for n in range(3)]
    failed = wait_for_attempts(org, first[0], 1)["attempts"]["latest"]
    assert failed["error"].startswith("404 ContainerNotFound")
    for log_id in first[1:]:
        assert wait_for_attempts(org, log_id, 1)["attempts"]["latest"]["status"] == "failed"
    later = [send_ok(source, message(n)) for n in range(3, 5)]
    container.create_container()

    files = wait_blobs(container, 2, timeout=60)
    names = {_stem(n): n for n in files}
    assert set(names) == {f"{first[0]}-3", f"{later[0]}-2"}
    assert [line["n"] for line in _lines(files[names[f"{first[0]}-3"]])] == [0, 1, 2]
    assert [line["n"] for line in _lines(files[names[f"{later[0]}-2"]])] == [3, 4]
    for log_id in first:
        log = wait_log(org, log_id, "succeeded")
        assert log["attempts"]["total"] >= 2
        assert log["fileName"] == names[f"{first[0]}-3"]


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[1].removesuffix(".ndjson")


def test_one_file_holds_one_data_model(org: Org, azurite: Azurite) -> None:
    container = new_container(azurite)
    destination = cloud_destination(
        org, container.container_name, shared_key(org), delivery=_batched(2, 1)
    )
    source = new_source(org)
    subscribe(org, source, destination["id"])
    subscribe(org, source, destination["id"], data_model="Results")
    send_ok(source, message(0))
    send_ok(source, message(1, data_model="Results"))
    send_ok(source, message(2))
    send_ok(source, message(3, data_model="Results"))
    files = wait_blobs(container, 2)
    for name, content in files.items():
        models = {line["Meta"]["DataModel"] for line in _lines(content)}
        assert len(models) == 1
        assert f"/{models.pop()}/" in name


@pytest.mark.parametrize(
    ("delivery", "field"),
    [
        ({"mode": "fifo", "batch": {"maxMessages": 5, "maxSeconds": 1}}, "delivery.batch"),
        ({"batch": {"maxMessages": 0, "maxSeconds": 1}}, "delivery.batch.maxMessages"),
        ({"batch": {"maxMessages": 5}}, "delivery.batch.maxSeconds"),
        ({"batch": {"maxMessages": 5, "maxSeconds": 1, "x": 1}}, "delivery.batch.x"),
    ],
)
def test_batch_settings_are_checked(
    org: Org, azurite: Azurite, delivery: dict[str, Any], field: str
) -> None:
    body = {
        "name": "Lakehouse",
        "authCredential": shared_key(org),
        "cloudProviderSettings": {
            "typeId": "azure",
            "productId": "databricks",
            "settings": {"storageAccountName": "acct", "containerName": "files"},
        },
        "delivery": delivery,
    }
    answer = org.client().post(f"{BASE}/environments/{org.dev}/destinations", json=body)
    assert answer.status_code in (400, 422), answer.text
    assert field in [e["field"] for e in answer.json()["errors"]], answer.text


def test_a_url_destination_cannot_batch(org: Org) -> None:
    with receiving() as receiver:
        answer = org.client().post(
            f"{BASE}/environments/{org.dev}/destinations",
            json={"name": "Receiver", "endpoint": receiver.url, "delivery": _batched(5, 1)},
        )
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["delivery.batch"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def small_batches(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, azurite: Azurite
) -> Iterator[Server]:
    """Batch files of at most 10 KB of messages."""
    yield from server_for(
        request,
        tmp_path_factory,
        "small-batches",
        azure_blob_endpoint=azurite.endpoint_template,
        retry_scale=0.001,
        max_batch_bytes=10_000,
    )


def test_a_batch_file_stops_at_max_batch_bytes(small_batches: Server, azurite: Azurite) -> None:
    org = small_batches.new_org()
    container = new_container(azurite)
    destination = cloud_destination(
        org, container.container_name, shared_key(org), delivery=_batched(10, 1)
    )
    source = new_source(org)
    subscribe(org, source, destination["id"])
    padding = "x" * 3000  # about 3.2 KB a message: three fit in 10 KB, four do not
    log_ids = [send_ok(source, message(n, padding=padding)) for n in range(7)]
    for log_id in log_ids:
        wait_log(org, log_id, "succeeded")
    files = blobs(container)
    assert sorted(len(_lines(c)) for c in files.values()) == [1, 3, 3]
    assert sum(len(c) for c in files.values()) > 7 * 3000
