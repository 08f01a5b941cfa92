"""Delivery to a cloud destination: files in an Azure Blob Storage container.

One message is one blob, `{fileNamePrefix}{DataModel}/{yyyy}/{mm}/{dd}/{logId}.json`
(the UTC day it was accepted; spaces in the data model become `_`), holding the body a URL
destination would receive. A batch is one newline-delimited JSON blob named after its
first log and its size, written whole in one request, so a reader never sees half of one.

Every write is a conditional create (`If-None-Match: *`): a retry after an ambiguous
failure (the worker killed after the write, before its acknowledgement) finds the blob
there and counts it as delivered, so nothing is written twice or overwritten. The SDK's
own retries are off; the queue's schedule is the one retry policy. Every request goes
through the guarded outbound session.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from waypost import clock
from waypost.credentials import service as credentials
from waypost.credentials.tokens import TokenError
from waypost.delivery.senders import Outcome
from waypost.destinations.schemas import StorageSettings
from waypost.destinations.target import DeliveryTarget
from waypost.destinations.target import Failure as ProbeFailure
from waypost.logs.service import Delivery, delivered_body
from waypost.outbound import GuardRefused
from waypost.runtime import Runtime

JSON = "application/json"
NDJSON = "application/x-ndjson"
# The destination fields a failure points at (a verify call's 422 names one).
SETTINGS = "cloudProviderSettings"
ACCOUNT = f"{SETTINGS}.settings.storageAccountName"
CONTAINER = f"{SETTINGS}.settings.containerName"
CREDENTIAL = "authCredential"

# The SDK logs every request and response at INFO: about thirty lines per blob. Its
# failures reach the logs as attempts, in words; keep only its warnings.
logging.getLogger("azure").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class BlobFile:
    name: str
    body: bytes
    content_type: str
    metadata: dict[str, str]


def _folder(storage: StorageSettings, delivery: Delivery) -> str:
    day = clock.parse(delivery.created_at)
    # Spaces as `_`; a slash would make a folder of its own, so it goes the same way.
    model = delivery.data_model.replace(" ", "_").replace("/", "_").replace("\\", "_")
    return f"{storage.file_name_prefix or ''}{model}/{day:%Y/%m/%d}/"


def _metadata(delivery: Delivery) -> dict[str, str]:
    # Blob metadata travels as HTTP headers: ASCII only, so anything else is escaped.
    def ascii_only(value: str) -> str:
        return value.encode("ascii", "backslashreplace").decode("ascii")

    return {
        "logid": delivery.log_id,
        "datamodel": ascii_only(delivery.data_model),
        "eventtype": ascii_only(delivery.event_type),
        "sourceid": delivery.source_id,
    }


def single_file(storage: StorageSettings, delivery: Delivery, attempt_id: str) -> BlobFile:
    return BlobFile(
        name=f"{_folder(storage, delivery)}{delivery.log_id}.json",
        body=delivered_body(delivery, attempt_id),
        content_type=JSON,
        metadata=_metadata(delivery),
    )


def batch_file(storage: StorageSettings, batch: Sequence[tuple[Delivery, str]]) -> BlobFile:
    """One line per message, in queue order; named and described by the first."""
    first = batch[0][0]
    lines = b"".join(delivered_body(d, attempt_id) + b"\n" for d, attempt_id in batch)
    return BlobFile(
        name=f"{_folder(storage, first)}{first.log_id}-{len(batch)}.ndjson",
        body=lines,
        content_type=NDJSON,
        metadata={**_metadata(first), "count": str(len(batch))},
    )


def account_url(rt: Runtime, storage: StorageSettings) -> str:
    return rt.settings.azure_blob_endpoint.format(account=storage.storage_account_name)


class Containers:
    """The worker's container clients, one per destination, each rebuilt after
    `ttl_seconds` so that a changed credential or setting applies within that time (as the
    worker's destination settings do). Building one loads and opens the credential and
    assembles the SDK's pipeline: too much to do per message."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._clients: dict[str, tuple[float, tuple[object, ...], ContainerClient]] = {}

    async def get(self, rt: Runtime, target: DeliveryTarget) -> ContainerClient:
        storage = _storage(target)
        key = (target.auth_credential_id, account_url(rt, storage), storage.container_name)
        now = time.monotonic()
        cached = self._clients.get(target.id)
        if cached is not None and cached[1] == key and now - cached[0] < self._ttl:
            return cached[2]
        client = await _container(rt, target)
        self._clients[target.id] = (now, key, client)
        return client


async def _container(rt: Runtime, target: DeliveryTarget) -> ContainerClient:
    """A client for the destination's container, signed with its credential. Raises
    TokenError when there is no credential or it cannot sign."""
    if target.auth_credential_id is None:
        raise TokenError("the destination has no auth credential to write to its container")
    storage = _storage(target)
    signer = await credentials.storage_signer(
        rt, target.auth_credential_id, account_name=storage.storage_account_name
    )
    service = BlobServiceClient(
        account_url(rt, storage),
        credential=signer,
        transport=rt.outbound.azure_transport(),
        retry_total=0,  # the queue retries, on its schedule
    )
    return service.get_container_client(storage.container_name)


def _storage(target: DeliveryTarget) -> StorageSettings:
    assert target.cloud_provider_settings is not None  # only cloud targets come here
    return target.cloud_provider_settings.settings


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int | None  # Azure's HTTP status, when it answered
    error: str  # in words a person can act on
    field: str  # the destination field to look at
    retry_after: str | None = None  # Azure's Retry-After on a 429 or 503


async def _with_container(
    rt: Runtime,
    target: DeliveryTarget,
    work: Callable[[ContainerClient], Awaitable[None]],
    *,
    timeout_seconds: float,
    containers: Containers | None = None,
) -> _Failure | None:
    """Runs `work` against the destination's container (a client from `containers`, or
    one for this call alone); None, or why it failed."""
    try:
        async with asyncio.timeout(timeout_seconds):
            if containers is not None:
                await work(await containers.get(rt, target))
            else:
                async with await _container(rt, target) as container:
                    await work(container)
    except HttpResponseError as exc:
        if exc.status_code in (401, 403) and target.auth_credential_id:
            await rt.tokens.forget(target.auth_credential_id)  # a revoked token: fetch anew
        retry_after = None
        if exc.status_code in (429, 503):
            retry_after = getattr(exc.response, "headers", {}).get("Retry-After")
        if _code(exc) == "ContainerNotFound":
            field = CONTAINER
        else:
            field = CREDENTIAL if exc.status_code in (401, 403) else SETTINGS
        return _Failure(exc.status_code, _explain(exc, target), field, retry_after)
    except TokenError as exc:
        error = f"no access token from the auth credential: {exc.message}"
        return _Failure(None, error, CREDENTIAL)
    except TimeoutError:
        error = f"no answer from the storage account within {timeout_seconds:g} s"
        return _Failure(None, error, SETTINGS)
    except (GuardRefused, ServiceRequestError, ServiceResponseError) as exc:
        return _Failure(None, *_unreachable(exc, rt, target))
    return None


async def write(
    rt: Runtime,
    target: DeliveryTarget,
    file: BlobFile,
    *,
    timeout_seconds: float,
    containers: Containers | None = None,
) -> Outcome:
    """Creates the blob unless it exists; an existing one is this file written before."""
    started = time.monotonic()
    status = 201

    async def upload(container: ContainerClient) -> None:
        nonlocal status
        try:
            await container.upload_blob(
                file.name,
                file.body,
                overwrite=False,  # If-None-Match: *
                metadata=file.metadata,
                content_settings=ContentSettings(content_type=file.content_type),
            )
        except ResourceExistsError as exc:
            if _code(exc) != "BlobAlreadyExists":
                raise
            status = 409  # written before, by an attempt whose answer was lost

    failure = await _with_container(
        rt, target, upload, timeout_seconds=timeout_seconds, containers=containers
    )
    elapsed = int((time.monotonic() - started) * 1000)
    if failure is None:
        return Outcome(True, status, None, None, elapsed, file_name=file.name)
    return Outcome(
        False, failure.status, failure.error, failure.retry_after, elapsed, file_name=file.name
    )


async def probe(
    rt: Runtime, target: DeliveryTarget, *, timeout_seconds: float
) -> ProbeFailure | None:
    """Writes a small blob `{fileNamePrefix}.waypost-verify-{uuid}`, reads it back and
    deletes it: proof that the account, the container and the credential work. None on
    success, else why not and which field to look at."""
    storage = _storage(target)
    name = f"{storage.file_name_prefix or ''}.waypost-verify-{uuid.uuid4()}"
    content = b'{"waypost": "verify"}'
    read = b""

    async def round_trip(container: ContainerClient) -> None:
        nonlocal read
        blob = container.get_blob_client(name)
        await blob.upload_blob(content, overwrite=False)
        read = await (await blob.download_blob()).readall()
        await blob.delete_blob()

    failure = await _with_container(rt, target, round_trip, timeout_seconds=timeout_seconds)
    if failure is not None:
        return ProbeFailure(failure.field, failure.error)
    if read != content:
        return ProbeFailure(
            SETTINGS, f"the probe blob {name} read back different from what was written"
        )
    return None


async def probe_destination(rt: Runtime, target: DeliveryTarget) -> ProbeFailure | None:
    """The verify call's probe, bounded like a URL destination's handshake."""
    return await probe(rt, target, timeout_seconds=rt.settings.verify_timeout_seconds)


def _explain(exc: HttpResponseError, target: DeliveryTarget) -> str:
    """Azure's answer in words a person can act on, led by its status and error code."""
    storage = _storage(target)
    code = _code(exc)
    container, account = storage.container_name, storage.storage_account_name
    reasons = {
        "AuthorizationPermissionMismatch": (
            f"the credential may not write to container {container} (an Entra ID "
            "application needs a role such as Storage Blob Data Contributor; a SAS needs "
            "create and write permissions)"
        ),
        # Azurite's answer to a wrong key; Azure's when a SAS or network rule forbids it.
        "AuthorizationFailure": (
            f"account {account} refused the credential for container {container} (a wrong "
            "account key, a SAS without write permission, or a network rule)"
        ),
        "AuthenticationFailed": (
            f"account {account} refused the credential (a wrong account key, or an expired "
            "SAS or token)"
        ),
        "InvalidAuthenticationInfo": f"account {account} refused the credential",
        "ContainerNotFound": f"container {container} does not exist in account {account}",
        "ServerBusy": "the storage account is throttling; backing off",
        "AccountIsDisabled": f"account {account} is disabled",
    }
    head = f"{exc.status_code} {code}".strip() if code else f"HTTP {exc.status_code}"
    reason = reasons.get(code) or _first_line(exc.message)
    return f"{head}: {reason}" if reason else head


def _code(exc: HttpResponseError) -> str:
    # The storage SDK sets it from the x-ms-error-code header, sometimes as its enum;
    # azure-core does not declare it.
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _unreachable(exc: Exception, rt: Runtime, target: DeliveryTarget) -> tuple[str, str]:
    """Why the storage account could not be reached, and the field to look at."""
    storage = _storage(target)
    where = account_url(rt, storage)
    if isinstance(exc, GuardRefused):
        return exc.message, SETTINGS
    cause = getattr(exc, "inner_exception", None) or exc.__cause__
    if isinstance(cause, GuardRefused):
        return cause.message, SETTINGS
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        name = storage.storage_account_name
        return f"account name does not resolve: {name} ({where})", ACCOUNT
    if isinstance(cause, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return f"TLS with the storage account failed: {cause}", SETTINGS
    if isinstance(cause, aiohttp.ClientConnectorError) and isinstance(
        cause.os_error, ConnectionRefusedError
    ):
        return f"the storage account {where} refused the connection", SETTINGS
    return f"cannot reach the storage account {where}: {type(cause or exc).__name__}", SETTINGS
