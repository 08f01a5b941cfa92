"""Cloud destinations deliver files into Azure Blob Storage (Azurite here), one blob per
message, conditionally created, readable by DuckDB as a lakehouse would read them."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from tests.azurite import ACCOUNT_KEY, Azurite
from tests.blob.support import (
    blobs,
    cloud_destination,
    credential,
    duckdb_rows,
    new_container,
    send_ok,
    shared_key,
    wait_blobs,
    wait_for_attempts,
)
from tests.delivery.support import BASE, message, new_source, subscribe, wait_log
from tests.support import Org


def test_each_message_is_one_blob_named_by_model_day_and_log(
    org: Org, azurite: Azurite, tmp_path: Path
) -> None:
    container = new_container(azurite)
    destination = cloud_destination(org, container.container_name, shared_key(org))
    source = new_source(org)
    subscribe(org, source, destination["id"], data_model="Clinical Summary")
    log_ids = [
        send_ok(source, message(n, data_model="Clinical Summary", event_type="PatientPush"))
        for n in range(3)
    ]

    found = wait_blobs(container, 3)
    day = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d")
    assert set(found) == {f"waypost/Clinical_Summary/{day}/{log_id}.json" for log_id in log_ids}
    for log_id in log_ids:
        log = wait_log(org, log_id, "succeeded")
        assert log["fileName"] == f"waypost/Clinical_Summary/{day}/{log_id}.json"
        properties = container.get_blob_client(log["fileName"]).get_blob_properties()
        assert properties.content_settings.content_type == "application/json"
        assert properties.metadata == {
            "logid": log_id,
            "datamodel": "Clinical Summary",
            "eventtype": "PatientPush",
            "sourceid": source.id,
        }
        body = json.loads(found[log["fileName"]])
        # The body a URL destination would receive: the message with Meta filled in.
        assert body["Meta"]["Logs"][0]["ID"] == log_id
        assert body["Meta"]["Source"] == {"ID": source.id, "Name": source.name}
        assert body["Meta"]["Destinations"] == [
            {"ID": destination["id"], "Name": destination["name"]}
        ]

    rows = duckdb_rows(found, tmp_path, "read_json_auto")
    assert len(rows) == 3
    assert sorted(r["Meta"]["Logs"][0]["ID"] for r in rows) == sorted(log_ids)
    assert sorted(r["n"] for r in rows) == [0, 1, 2]


def test_a_cloud_destination_shows_unordered_16_and_accepts_fifo(
    org: Org, azurite: Azurite
) -> None:
    destination = cloud_destination(org, "any", shared_key(org))
    assert destination["delivery"] == {
        "mode": "unordered",
        "concurrency": 16,
        "orderingKey": None,
        "maxRetrySeconds": None,
        "batch": None,
    }
    fifo = cloud_destination(org, "any", shared_key(org), delivery={"mode": "fifo"})
    assert fifo["delivery"]["mode"] == "fifo"
    assert fifo["delivery"]["concurrency"] == 1


def test_fifo_cloud_delivery_writes_in_send_order(org: Org, azurite: Azurite) -> None:
    container = new_container(azurite)
    destination = cloud_destination(
        org, container.container_name, shared_key(org), delivery={"mode": "fifo"}
    )
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_ids = [send_ok(source, message(n)) for n in range(6)]
    wait_blobs(container, 6)
    created = {
        b.name.rsplit("/", 1)[-1].removesuffix(".json"): b.creation_time
        for b in container.list_blobs()
    }
    assert sorted(created, key=lambda log_id: created[log_id]) == log_ids


def test_a_cloud_destination_without_a_credential_refuses_messages(
    org: Org, azurite: Azurite
) -> None:
    destination = cloud_destination(org, "any", None)
    source = new_source(org)
    subscribe(org, source, destination["id"])
    answer = source.send(message(1, destination["id"]))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == ["Meta.Destinations[0].ID"]
    assert destination["id"] in problem["detail"]
    assert "auth credential" in problem["detail"]


def test_a_missing_container_is_retried_and_an_existing_blob_is_never_overwritten(
    org: Org, azurite: Azurite
) -> None:
    """The first attempt finds no container (404 ContainerNotFound, recorded). Then a blob
    with the message's name appears, as if an earlier attempt had written it and its
    answer was lost: the retry counts it as delivered and leaves it as it is."""
    container = new_container(azurite)
    container.delete_container()
    destination = cloud_destination(org, container.container_name, shared_key(org))
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_id = send_ok(source, message(1))

    log = wait_for_attempts(org, log_id, 1)
    latest = log["attempts"]["latest"]
    assert latest["status"] == "failed"
    assert latest["httpStatus"] == 404
    assert latest["error"].startswith("404 ContainerNotFound")
    assert container.container_name in latest["error"]

    container.create_container()
    day = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d")
    name = f"waypost/PatientAdmin/{day}/{log_id}.json"
    container.upload_blob(name, b'{"written": "before"}')

    log = wait_log(org, log_id, "succeeded", timeout=60)
    assert log["fileName"] == name
    assert blobs(container) == {name: b'{"written": "before"}'}


def test_a_wrong_account_key_is_a_failed_attempt_saying_so(org: Org, azurite: Azurite) -> None:
    container = new_container(azurite)
    wrong = shared_key(org, key="d3JvbmcgYWNjb3VudCBrZXkgd3Jvbmcgd3Jvbmcgd3Jvbmc=")
    destination = cloud_destination(org, container.container_name, wrong)
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_id = send_ok(source, message(1))
    latest = wait_for_attempts(org, log_id, 1)["attempts"]["latest"]
    assert latest["status"] == "failed"
    assert latest["httpStatus"] == 403
    # Azure says AuthenticationFailed, Azurite AuthorizationFailure; both name the cause.
    assert latest["error"].startswith(("403 AuthenticationFailed", "403 AuthorizationFailure"))
    assert "refused the credential" in latest["error"]
    assert blobs(container) == {}


def test_a_credential_of_the_other_kind_is_refused_when_attached(
    org: Org, azurite: Azurite
) -> None:
    """A BasicAuth credential cannot sign for a container, nor an account key for a URL
    receiver: 422 naming authCredential on create and on PATCH, not failed attempts later."""
    basic = credential(org, "BasicAuth", username="u", password="p")
    key = shared_key(org)
    api = org.client()
    cloud = {
        "typeId": "azure",
        "productId": "databricks",
        "settings": {"storageAccountName": "acct", "containerName": "files"},
    }
    url = "https://receiver.example.org/hook"
    for body, allowed in (
        ({"cloudProviderSettings": cloud, "authCredential": basic}, "AzureSharedKey"),
        ({"endpoint": url, "authCredential": key}, "BasicAuth"),
    ):
        refused = api.post(
            f"{BASE}/environments/{org.dev}/destinations", json={"name": "Mismatch", **body}
        )
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["authCredential"]
        assert allowed in refused.json()["detail"]

    storage = cloud_destination(org, "files", key)
    patched = api.patch(f"{BASE}/destinations/{storage['id']}", json={"authCredential": basic})
    assert patched.status_code == 422, patched.text
    assert [e["field"] for e in patched.json()["errors"]] == ["authCredential"]
    kept = api.get(f"{BASE}/destinations/{storage['id']}").json()["payload"]["destination"]
    assert kept["authCredential"] == key


def test_verify_writes_reads_and_deletes_a_probe_blob(org: Org, azurite: Azurite) -> None:
    container = new_container(azurite)
    destination = cloud_destination(org, container.container_name, shared_key(org))
    assert destination["verification"] is None

    answer = org.client().post(f"{BASE}/destinations/{destination['id']}/verify")
    assert answer.status_code == 200, answer.text
    verified = answer.json()["payload"]["destination"]
    assert verified["verified"] is True
    assert verified["verification"]["status"] == "verified"
    assert verified["verification"]["checkedAt"]
    # The probe was written under the prefix and removed again.
    assert blobs(container) == {}
    names = [e.name for e in container.list_blobs(include=["deleted"])]
    assert names == [] or all(n.startswith("waypost/.waypost-verify-") for n in names)


def test_verify_says_why_a_cloud_destination_fails(org: Org, azurite: Azurite) -> None:
    missing = new_container(azurite)
    missing.delete_container()
    destination = cloud_destination(org, missing.container_name, shared_key(org))
    answer = org.client().post(f"{BASE}/destinations/{destination['id']}/verify")
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == [
        "cloudProviderSettings.settings.containerName"
    ]
    assert "404 ContainerNotFound" in problem["detail"]
    after = org.client().get(f"{BASE}/destinations/{destination['id']}").json()
    verification = after["payload"]["destination"]["verification"]
    assert verification["status"] == "failed"
    assert "ContainerNotFound" in verification["error"]

    container = new_container(azurite)
    wrong = shared_key(org, key="d3JvbmcgYWNjb3VudCBrZXkgd3Jvbmcgd3Jvbmcgd3Jvbmc=")
    destination = cloud_destination(org, container.container_name, wrong)
    answer = org.client().post(f"{BASE}/destinations/{destination['id']}/verify")
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["authCredential"]


def test_verify_refuses_a_cloud_destination_without_a_credential_or_with_url_fields(
    org: Org, azurite: Azurite
) -> None:
    bare = cloud_destination(org, "any", None)
    answer = org.client().post(f"{BASE}/destinations/{bare['id']}/verify")
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["authCredential"]

    keyed = cloud_destination(org, "any", shared_key(org))
    answer = org.client().post(
        f"{BASE}/destinations/{keyed['id']}/verify", json={"verificationToken": "abc"}
    )
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["verificationToken"]


def test_a_corrected_account_key_applies_to_messages_already_waiting(
    org: Org, azurite: Azurite
) -> None:
    """The worker keeps a container client per destination; a credential that changes
    reaches it (within a second), and the waiting message is written."""
    container = new_container(azurite)
    credential_id = shared_key(org, key="d3JvbmcgYWNjb3VudCBrZXkgd3Jvbmcgd3Jvbmcgd3Jvbmc=")
    destination = cloud_destination(org, container.container_name, credential_id)
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_id = send_ok(source, message(1))
    assert wait_for_attempts(org, log_id, 2)["status"] == "pending"

    fixed = org.client().patch(
        f"{BASE}/authcredentials/{credential_id}", json={"accountKey": ACCOUNT_KEY}
    )
    assert fixed.status_code == 200, fixed.text
    assert wait_log(org, log_id, "succeeded", timeout=60)["fileName"]
    assert len(blobs(container)) == 1
