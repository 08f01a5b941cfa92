"""The ways a cloud destination signs its writes: a container SAS (AzureSAS), and an Entra
ID token (OAuth_2.0_2-legged) from Waypost's token cache, checked by Azurite's
`--oauth basic` over HTTPS with a loopback token server issuing it. Secrets are write-only.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs

import jwt
import pytest
import sqlalchemy as sa
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from tests.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, running_azurite
from tests.blob.support import (
    blobs,
    cloud_destination,
    credential,
    new_container,
    send_ok,
    shared_key,
    wait_blobs,
    wait_for_attempts,
)
from tests.delivery.support import BASE, message, new_source, subscribe, wait_log
from tests.receivers import Receiver, Reply, Seen, TlsFiles, make_tls_files
from tests.support import Org, Server, server_for
from waypost.credentials.tables import auth_credentials
from waypost.db import Database

STORAGE_SCOPE = "https://storage.azure.com/.default"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def container_sas(container: ContainerClient, permission: ContainerSasPermissions) -> str:
    """A container SAS signed with Azurite's well-known account key."""
    return generate_container_sas(
        ACCOUNT,
        container.container_name,
        account_key=ACCOUNT_KEY,
        permission=permission,
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
    )


# --- AzureSAS --------------------------------------------------------------------------------


def test_a_container_sas_with_write_and_create_delivers(org: Org, azurite: Azurite) -> None:
    container = new_container(azurite)
    sas = container_sas(container, ContainerSasPermissions(write=True, create=True))
    destination = cloud_destination(
        org, container.container_name, credential(org, "AzureSAS", sasToken=sas)
    )
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_ids = [send_ok(source, message(n)) for n in range(3)]

    found = wait_blobs(container, 3)
    for log_id in log_ids:
        log = wait_log(org, log_id, "succeeded")
        assert log["fileName"].endswith(f"/{log_id}.json")
        assert json.loads(found[log["fileName"]])["Meta"]["Logs"][0]["ID"] == log_id
    assert len(found) == 3


def test_a_read_only_sas_is_a_403_naming_the_container(org: Org, azurite: Azurite) -> None:
    container = new_container(azurite)
    sas = container_sas(container, ContainerSasPermissions(read=True, list=True))
    destination = cloud_destination(
        org, container.container_name, credential(org, "AzureSAS", sasToken=sas)
    )
    source = new_source(org)
    subscribe(org, source, destination["id"])
    log_id = send_ok(source, message(1))

    latest = wait_for_attempts(org, log_id, 1)["attempts"]["latest"]
    assert latest["status"] == "failed"
    assert latest["httpStatus"] == 403
    assert latest["error"].startswith(
        "403 AuthorizationPermissionMismatch: the credential may not write to container "
        f"{container.container_name}"
    )
    assert sas not in latest["error"]
    assert blobs(container) == {}


def test_azure_secrets_are_write_only(org: Org, azurite: Azurite) -> None:
    """`sasToken` and `accountKey` go in and never come out: not from the create, the
    read, the list or an update; the view says `hasSasToken` / `hasAccountKey`."""
    container = new_container(azurite)
    sas = container_sas(container, ContainerSasPermissions(write=True, create=True))
    other_sas = container_sas(container, ContainerSasPermissions(write=True))
    signatures = [part for token in (sas, other_sas) for part in token.split("&") if "sig=" in part]
    assert len(signatures) == 2
    secrets = [sas, other_sas, ACCOUNT_KEY, *signatures]
    api = org.client()
    answers = []

    sas_id = credential(org, "AzureSAS", sasToken="?" + sas)
    key_id = shared_key(org)
    by_id = {sas_id: "hasSasToken", key_id: "hasAccountKey"}
    for credential_id, flag in by_id.items():
        read = api.get(f"{BASE}/authcredentials/{credential_id}")
        assert read.status_code == 200, read.text
        view = read.json()["payload"]["authCredential"]
        assert view[flag] is True
        assert "sasToken" not in view
        assert "accountKey" not in view
        answers.append(read)
    listed = api.get(f"{BASE}/environments/{org.dev}/authcredentials")
    assert listed.status_code == 200, listed.text
    views = {c["id"]: c for c in listed.json()["payload"]["credentials"]}
    for credential_id, flag in by_id.items():
        assert views[credential_id][flag] is True
        assert not {"sasToken", "accountKey"} & set(views[credential_id])
    answers.append(listed)

    replaced = api.patch(f"{BASE}/authcredentials/{sas_id}", json={"sasToken": other_sas})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["payload"]["authCredential"]["hasSasToken"] is True
    answers.append(replaced)
    refused = api.patch(f"{BASE}/authcredentials/{sas_id}", json={"sasToken": other_sas + " x"})
    assert refused.status_code == 422, refused.text
    answers.append(refused)
    rekeyed = api.patch(f"{BASE}/authcredentials/{key_id}", json={"accountKey": ACCOUNT_KEY})
    assert rekeyed.status_code == 200, rekeyed.text
    assert rekeyed.json()["payload"]["authCredential"]["hasAccountKey"] is True
    answers.append(rekeyed)
    # The create answers too.
    created = api.post(
        f"{BASE}/authcredentials",
        json={
            "environmentId": org.dev,
            "name": f"sas {uuid.uuid4().hex[:6]}",
            "authStrategy": "AzureSAS",
            "sasToken": sas,
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["payload"]["authCredential"]["hasSasToken"] is True
    answers.append(created)

    # The audit trail says a secret changed, never what it is.
    audit = api.get(f"{BASE}/organizations/{org.id}/audit-events")
    assert audit.status_code == 200, audit.text
    assert "auth-credential-updated" in audit.text
    answers.append(audit)

    for answer in answers:
        for secret in secrets:
            assert secret not in answer.text
    # At rest, sealed: the database holds neither the token nor the key.
    stored = stored_secrets(org.server, [sas_id, key_id])
    assert set(stored) == {"sasToken", "accountKey"}
    for secret in secrets:
        assert secret not in repr(stored)


def stored_secrets(server: Server, credential_ids: list[str]) -> dict[str, str]:
    """The credentials' sealed secret fields, as the database holds them."""

    async def read(db: Database) -> dict[str, str]:
        async with db.read() as conn:
            result = await conn.execute(
                sa.select(auth_credentials.c.secrets).where(
                    auth_credentials.c.id.in_(credential_ids)
                )
            )
            return {name: value for row in result for name, value in row[0].items()}

    found: dict[str, str] = server.run(read)
    return found


# --- OAuth (Entra ID) against Azurite's --oauth basic over HTTPS -------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("azurite-tls"))


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Azurite]:
    """A second Azurite: HTTPS with the test CA's certificate, checking bearer tokens."""
    with running_azurite(tmp_path_factory.mktemp("azurite-oauth"), tls=tls, oauth=True) as em:
        yield em


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def oauth_cloud(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    azurite_oauth: Azurite,
    tls: TlsFiles,
) -> Iterator[Server]:
    """A server that trusts the test CA and whose storage accounts are the HTTPS Azurite's."""
    yield from server_for(
        request,
        tmp_path_factory,
        "cloud-oauth",
        azure_blob_endpoint=azurite_oauth.endpoint_template,
        ca_bundle=tls.ca_pem,
        retry_scale=0.001,
        delivery_timeout_seconds=5.0,
    )


def https_container(azurite: Azurite, tls: TlsFiles) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string(), connection_verify=str(tls.ca_pem)
    )
    container = service.get_container_client(f"c{uuid.uuid4().hex[:20]}")
    container.create_container()
    return container


def entra_token(now: float) -> str:
    """What Azurite's --oauth basic accepts: an Entra ID issuer, the storage audience and
    a current lifetime. It checks no signature, so any key signs it."""
    issued = int(now) - 60
    claims = {
        "iss": f"https://sts.windows.net/{TENANT}/",
        "aud": "https://storage.azure.com",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 3600,
        "oid": str(uuid.uuid4()),
        "tid": TENANT,
    }
    return jwt.encode(claims, "any key will do: Azurite checks no signature", algorithm="HS256")


def entra(seen: Seen) -> Reply:
    """A token endpoint: client_credentials for the storage scope, or an OAuth error."""
    form = _form(seen.body)
    if seen.method != "POST" or form.get("grant_type") != ["client_credentials"]:
        return Reply(400, b'{"error": "unsupported_grant_type"}')
    if form.get("scope") != [STORAGE_SCOPE]:
        return Reply(400, b'{"error": "invalid_scope"}')
    answer = {"access_token": entra_token(time.time()), "token_type": "Bearer", "expires_in": 3599}
    return Reply(200, json.dumps(answer).encode())


def _form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode(), keep_blank_values=True)


def oauth_credential(org: Org, token_url: str) -> str:
    return credential(
        org,
        "OAuth_2.0_2-legged",
        url=token_url,
        clientId=f"app-{uuid.uuid4().hex[:8]}",
        clientSecret=f"secret-{uuid.uuid4().hex}",
        scopes=STORAGE_SCOPE,
    )


def test_an_entra_token_from_the_cache_writes_blobs_over_https(
    oauth_cloud: Server, azurite_oauth: Azurite, tls: TlsFiles
) -> None:
    org = oauth_cloud.new_org()
    container = https_container(azurite_oauth, tls)
    with Receiver(entra) as token_server:
        credential_id = oauth_credential(org, token_server.url_for("oauth2/v2.0/token"))
        destination = cloud_destination(org, container.container_name, credential_id)
        source = new_source(org)
        subscribe(org, source, destination["id"])
        # One message first, then four more once it is in: the later ones find the token
        # in the cache rather than sharing the first one's fetch.
        log_ids = [send_ok(source, message(0))]
        wait_log(org, log_ids[0], "succeeded")
        log_ids += [send_ok(source, message(n)) for n in range(1, 5)]

        found = wait_blobs(container, 5)
        for log_id in log_ids:
            log = wait_log(org, log_id, "succeeded")
            assert json.loads(found[log["fileName"]])["Meta"]["Logs"][0]["ID"] == log_id
        requests = token_server.seen
    # One token for every message: the token cache holds it.
    assert len(requests) == 1
    sent = _form(requests[0].body)
    assert sent["grant_type"] == ["client_credentials"]
    assert sent["scope"] == [STORAGE_SCOPE]
    assert requests[0].path == "/oauth2/v2.0/token"


def test_a_refused_token_request_is_a_failed_attempt_without_a_token(
    oauth_cloud: Server, azurite_oauth: Azurite, tls: TlsFiles
) -> None:
    org = oauth_cloud.new_org()
    container = https_container(azurite_oauth, tls)

    def refuse(_seen: Seen) -> Reply:
        return Reply(401, b'{"error": "invalid_client", "error_description": "bad secret"}')

    with Receiver(refuse) as token_server:
        credential_id = oauth_credential(org, token_server.url_for("oauth2/v2.0/token"))
        destination = cloud_destination(org, container.container_name, credential_id)
        source = new_source(org)
        subscribe(org, source, destination["id"])
        log_id = send_ok(source, message(1))
        latest = wait_for_attempts(org, log_id, 1)["attempts"]["latest"]
        assert token_server.seen
    assert latest["status"] == "failed"
    assert "no access token" in latest["error"]
    assert "401" in latest["error"]
    assert blobs(container) == {}


def test_https_azurite_refuses_a_token_from_another_issuer(
    azurite_oauth: Azurite, tls: TlsFiles
) -> None:
    """The checks above mean something: this Azurite refuses a token it should not take."""
    container = https_container(azurite_oauth, tls)
    claims = jwt.decode(entra_token(time.time()), options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "iss": "https://sts.example.net/tenant/"},
        "a key of thirty-two bytes or more.",
        algorithm="HS256",
    )
    writer = ContainerClient(
        azurite_oauth.account_url,
        container.container_name,
        credential=_Static(forged),
        connection_verify=str(tls.ca_pem),
    )
    with pytest.raises(HttpResponseError) as refused:
        writer.upload_blob("x.json", b"{}")
    assert refused.value.status_code == 403
    assert "Invalid token issuer" in str(refused.value.message)
    assert blobs(container) == {}


class _Static:
    """An azure.core TokenCredential handing out one fixed token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)
