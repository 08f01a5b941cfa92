from tests.support import Org


def test_create_then_get(org: Org) -> None:
    with org.client() as api:
        created = api.post(
            f"/platform/v1/environments/{org.dev}/destinations",
            json={"name": "a", "endpoint": "http://x.test/a"},
        )
        assert created.status_code == 201, created.text
        dest_id = created.json()["payload"]["destination"]["id"]
        got = api.get(f"/platform/v1/destinations/{dest_id}")
        assert got.status_code == 200
        assert got.json()["payload"]["destination"]["name"] == "a"
