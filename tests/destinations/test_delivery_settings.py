"""A destination's delivery settings: the rules once, without a database; storage, PATCH
and the effective object over HTTP on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.destinations.test_rules import cloud, create, create_ok, destination_of, invalid, patch
from tests.support import Org
from waypost.destinations.delivery_settings import (
    DeliveryMode,
    DeliverySettings,
    effective,
    merged,
)
from waypost.destinations.schemas import DeliveryIn
from waypost.http import Invalid

FIFO = DeliveryMode.FIFO
UNORDERED = DeliveryMode.UNORDERED


# --- the rules, backend-free ------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "is_cloud", "expected"),
    [
        (None, False, DeliverySettings(FIFO, 1, None, None)),
        ({"mode": "unordered"}, False, DeliverySettings(UNORDERED, 10, None, None)),
        ({"orderingKey": "/Patient/ID"}, False, DeliverySettings(FIFO, 10, "/Patient/ID", None)),
        ({"orderingKey": "/a", "concurrency": 3}, False, DeliverySettings(FIFO, 3, "/a", None)),
        (
            {"mode": "unordered", "concurrency": 100},
            False,
            DeliverySettings(UNORDERED, 100, None, None),
        ),
        ({"maxRetrySeconds": 3600}, False, DeliverySettings(FIFO, 1, None, 3600)),
        ({"concurrency": 1}, False, DeliverySettings(FIFO, 1, None, None)),
        (None, True, DeliverySettings(UNORDERED, 16, None, None)),
        ({"mode": "fifo"}, True, DeliverySettings(FIFO, 1, None, None)),
        ({"concurrency": 4}, True, DeliverySettings(UNORDERED, 4, None, None)),
    ],
)
def test_effective_settings_fill_in_defaults(
    stored: dict[str, Any] | None, is_cloud: bool, expected: DeliverySettings
) -> None:
    assert effective(stored, cloud=is_cloud) == expected


@pytest.mark.parametrize(
    ("stored", "is_cloud", "field"),
    [
        ({"concurrency": 2}, False, "delivery.concurrency"),
        ({"mode": "fifo", "concurrency": 10}, True, "delivery.concurrency"),
        ({"mode": "unordered", "orderingKey": "/a"}, False, "delivery.orderingKey"),
        ({"orderingKey": "/a"}, True, "delivery.orderingKey"),
    ],
)
def test_broken_combinations_name_the_field(
    stored: dict[str, Any], is_cloud: bool, field: str
) -> None:
    with pytest.raises(Invalid) as refused:
        effective(stored, cloud=is_cloud)
    assert refused.value.errors is not None
    assert [f for f, _ in refused.value.errors] == [field]


@pytest.mark.parametrize(
    ("stored", "given", "kept"),
    [
        (None, {"mode": "unordered"}, {"mode": "unordered"}),
        ({"mode": "unordered"}, {"concurrency": 5}, {"mode": "unordered", "concurrency": 5}),
        (
            {"orderingKey": "/a", "concurrency": 4},
            {"orderingKey": "/b"},
            {"orderingKey": "/b", "concurrency": 4},
        ),
        ({"orderingKey": "/a", "concurrency": 4}, {"orderingKey": None, "concurrency": None}, None),
        ({"mode": "unordered", "concurrency": 5}, None, None),
        ({"maxRetrySeconds": 60}, {}, {"maxRetrySeconds": 60}),
    ],
)
def test_patch_merges_keys_and_null_restores_defaults(
    stored: dict[str, Any] | None, given: dict[str, Any] | None, kept: dict[str, Any] | None
) -> None:
    assert merged(stored, given) == kept


VALID_POINTERS = [
    "/a",
    "/Patient/Identifiers/0/ID",
    "/a~0b/c~1d",
    "/",
    "//",
    "/ünïcode",
    "/" + "x" * 511,
]
INVALID_POINTERS = ["", "a", "Patient/ID", "/a~", "/a~2", "/~x", "/" + "x" * 512, "/a\x00"]


@pytest.mark.parametrize("pointer", VALID_POINTERS)
def test_valid_ordering_keys(pointer: str) -> None:
    assert DeliveryIn.model_validate({"orderingKey": pointer}).ordering_key == pointer


@pytest.mark.parametrize("pointer", [*INVALID_POINTERS, 5, ["/a"]])
def test_invalid_ordering_keys(pointer: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        DeliveryIn.model_validate({"orderingKey": pointer})
    assert [e["loc"] for e in refused.value.errors()] == [("orderingKey",)]


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"mode": "lifo"}, "mode"),
        ({"mode": None, "concurrency": 0}, "concurrency"),
        ({"concurrency": 101}, "concurrency"),
        ({"concurrency": "5"}, "concurrency"),
        ({"concurrency": 2.0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"maxRetrySeconds": 0}, "maxRetrySeconds"),
        ({"maxRetrySeconds": 30 * 24 * 3600 + 1}, "maxRetrySeconds"),
        ({"foo": 1}, "foo"),
        ({"max_retry_seconds": 5}, "max_retry_seconds"),
    ],
)
def test_invalid_delivery_fields(given: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        DeliveryIn.model_validate(given)
    assert [e["loc"][0] for e in refused.value.errors()] == [field]


def test_bounds_are_accepted() -> None:
    settings = DeliveryIn.model_validate(
        {"mode": "unordered", "concurrency": 100, "maxRetrySeconds": 30 * 24 * 3600}
    )
    assert (settings.concurrency, settings.max_retry_seconds) == (100, 30 * 24 * 3600)
    assert DeliveryIn.model_validate({"maxRetrySeconds": 1}).max_retry_seconds == 1


# --- over HTTP ----------------------------------------------------------------------------

URL_DEFAULT = {
    "mode": "fifo",
    "concurrency": 1,
    "orderingKey": None,
    "maxRetrySeconds": None,
    "batch": None,
}
ENDPOINT = "https://receiver.example.org/hook"


def test_every_destination_shows_its_effective_delivery(org: Org) -> None:
    with org.client() as api:
        url = create_ok(api, org.dev, endpoint=ENDPOINT)
        assert url["delivery"] == URL_DEFAULT
        storage = create_ok(api, org.dev, cloudProviderSettings=cloud())
        assert storage["delivery"] == {**URL_DEFAULT, "mode": "unordered", "concurrency": 16}
        draft = create_ok(api, org.dev, delivery=None)
        assert draft["delivery"] == URL_DEFAULT
        listed = destination_of(api.get(f"/platform/v1/destinations/{url['id']}"))
        assert listed["delivery"] == URL_DEFAULT


def test_delivery_on_create_is_stored_with_defaults_filled_in(org: Org) -> None:
    with org.client() as api:
        lanes = create_ok(api, org.dev, endpoint=ENDPOINT, delivery={"orderingKey": "/Patient/ID"})
        assert lanes["delivery"] == {**URL_DEFAULT, "orderingKey": "/Patient/ID", "concurrency": 10}
        got = destination_of(api.get(f"/platform/v1/destinations/{lanes['id']}"))
        assert got["delivery"] == lanes["delivery"]


def test_patch_replaces_given_keys_and_keeps_the_others(org: Org) -> None:
    with org.client() as api:
        created = create_ok(
            api, org.dev, endpoint=ENDPOINT, delivery={"mode": "unordered", "concurrency": 5}
        )
        changed = destination_of(patch(api, created["id"], delivery={"maxRetrySeconds": 600}))
        assert changed["delivery"] == {
            "mode": "unordered",
            "concurrency": 5,
            "orderingKey": None,
            "maxRetrySeconds": 600,
            "batch": None,
        }
        # A key set to null goes back to its default; the rest stay.
        changed = destination_of(patch(api, created["id"], delivery={"concurrency": None}))
        assert changed["delivery"]["concurrency"] == 10
        assert changed["delivery"]["maxRetrySeconds"] == 600
        # Other fields leave delivery alone; null for the object restores every default.
        assert (
            destination_of(patch(api, created["id"], name="x"))["delivery"] == changed["delivery"]
        )
        reset = destination_of(patch(api, created["id"], delivery=None))
        assert reset["delivery"] == URL_DEFAULT


def test_a_patch_that_breaks_a_rule_changes_nothing(org: Org) -> None:
    with org.client() as api:
        created = create_ok(api, org.dev, endpoint=ENDPOINT, delivery={"mode": "unordered"})
        # Back to fifo with 10 in flight and no orderingKey: not allowed.
        invalid(
            patch(api, created["id"], delivery={"mode": "fifo", "concurrency": 10}),
            "delivery.concurrency",
        )
        invalid(patch(api, created["id"], delivery={"orderingKey": "/a"}), "delivery.orderingKey")
        got = destination_of(api.get(f"/platform/v1/destinations/{created['id']}"))
        assert got["delivery"] == created["delivery"]


@pytest.mark.parametrize(
    ("delivery", "field"),
    [
        ({"foo": 1}, "delivery.foo"),
        ({"orderingKey": "Patient/ID"}, "delivery.orderingKey"),
        ({"concurrency": 3}, "delivery.concurrency"),
        ({"mode": "unordered", "orderingKey": "/a"}, "delivery.orderingKey"),
        ("fifo", "delivery"),
    ],
)
def test_invalid_delivery_is_a_422_naming_the_field(org: Org, delivery: Any, field: str) -> None:
    with org.client() as api:
        errors = invalid(create(api, org.dev, endpoint=ENDPOINT, delivery=delivery), field)
        assert [e["field"] for e in errors] == [field]
        created = create_ok(api, org.dev, endpoint=ENDPOINT)
        invalid(patch(api, created["id"], delivery=delivery), field)
