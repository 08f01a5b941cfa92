"""OAuth API keys: a source whose key is a JWKS (inline or at a loopback URL), the
client-assertion flow on /v2/auth/token for it, and Source Auth v2's /oauth/token
(RS384, ES384, and HS384 with a legacy key's secret)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.access_support import assert_invalid, assert_problem, audit_events, make_user
from tests.sources.helpers import (
    API,
    KEY_NOT_FOUND,
    JwksServer,
    apikey_url,
    assertion,
    create_apikey,
    create_source,
    env_apikeys,
    new_ec384,
    new_rsa,
    public_jwk,
    runtime_of,
    sending_source,
    set_source_columns,
    source_url,
    token_request,
    url_of,
)
from tests.support import Org

V2 = "/v2/auth/token"
OAUTH = "/oauth/token"


def refused(response: Any, status: int = 401) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description", "error_uri"}
    description: str = body["error_description"]
    return description


def test_apikey_with_a_jwk_set(org: Org) -> None:
    key = new_ec384()
    jwk = public_jwk(key, "k1")
    apikey = create_apikey(org, {"name": "EHR sender", "jwkSet": {"keys": [jwk]}})
    assert apikey["name"] == "EHR sender"
    assert apikey["jwksURL"] is None
    assert apikey["jwkSet"] == {"keys": [jwk]}
    assert apikey["environment"] == {"id": org.dev, "environmentFlag": "Development"}
    legacy = create_source(org)
    viewer = make_user(org, Development="viewer")
    with org.client(viewer.token) as api:
        listed = api.get(env_apikeys(org.dev)).json()["payload"]["apikeys"]
        assert listed == [apikey]  # OAuth keys only
        assert api.get(apikey_url(apikey["id"])).json()["payload"]["apikey"] == apikey
        assert_problem(api.get(apikey_url(legacy["id"])), 404)
        assert_problem(api.delete(apikey_url(apikey["id"])), 403)
        made = api.post(env_apikeys(org.dev), json={"name": "x", "jwkSet": {"keys": [jwk]}})
        assert_problem(made, 403)

    # The key's id is the client id of Redox's JWT flow, and its token is a source's.
    signed = assertion(
        key, client_id=apikey["id"], aud=url_of(org.server, V2), alg="ES384", kid="k1"
    )
    answer = token_request(org.server, V2, signed)
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "Bearer"
    assert answer.json()["expires_in"] == 300
    token = answer.json()["access_token"]
    sending = sending_source(org.server, token)
    assert sending is not None and sending.id == apikey["id"]
    with org.client(token) as api:
        assert_problem(api.get(f"{API}/organizations/{org.id}/environments"), 401)

    assert "already used" in refused(token_request(org.server, V2, signed))
    wrong_aud = assertion(
        key, client_id=apikey["id"], aud=url_of(org.server, OAUTH), alg="ES384", kid="k1"
    )
    assert "aud" in refused(token_request(org.server, V2, wrong_aud))
    unknown_kid = assertion(
        key, client_id=apikey["id"], aud=url_of(org.server, V2), alg="ES384", kid="k9"
    )
    assert refused(token_request(org.server, V2, unknown_kid)) == KEY_NOT_FOUND
    no_kid = assertion(key, client_id=apikey["id"], aud=url_of(org.server, V2), alg="ES384")
    assert (
        refused(token_request(org.server, V2, no_kid), 400) == "JWT header kid property is required"
    )
    other_key = assertion(
        new_ec384(), client_id=apikey["id"], aud=url_of(org.server, V2), alg="ES384", kid="k1"
    )
    assert "Signature" in refused(token_request(org.server, V2, other_key))
    # A legacy key has no key set: /v2/auth/token does not know it.
    legacy_signed = assertion(
        legacy["secret"], client_id=legacy["id"], aud=url_of(org.server, V2), alg="HS384"
    )
    assert (
        refused(token_request(org.server, V2, legacy_signed), 400)
        == "JWT header kid property is required"
    )

    with org.client() as api:
        deleted = api.delete(apikey_url(apikey["id"]))
        assert deleted.status_code == 200, deleted.text
        assert apikey["id"] in deleted.json()["payload"]["message"]
        assert_problem(api.get(apikey_url(apikey["id"])), 404)
    assert sending_source(org.server, token) is None
    types = [e["type"] for e in audit_events(org)]
    assert "apikey-created" in types and "apikey-deleted" in types


def test_apikey_rules(org: Org) -> None:
    rsa_jwk = public_jwk(new_rsa(), "r1")
    with org.client() as api:
        url = env_apikeys(org.dev)
        assert_invalid(api.post(url, json={"jwkSet": {"keys": [rsa_jwk]}}), "name")
        assert_invalid(api.post(url, json={"name": "x"}), "jwkSet")
        both = {"name": "x", "jwkSet": {"keys": [rsa_jwk]}, "jwksURL": "https://k.example/jwks"}
        assert_invalid(api.post(url, json=both), "jwkSet")
        assert_invalid(api.post(url, json={"name": "x", "jwkSet": {"keys": []}}), "jwkSet")
        private = {**rsa_jwk, "d": "AQAB"}
        assert_invalid(api.post(url, json={"name": "x", "jwkSet": {"keys": [private]}}), "jwkSet")
        no_kid = {k: v for k, v in rsa_jwk.items() if k != "kid"}
        assert_invalid(api.post(url, json={"name": "x", "jwkSet": {"keys": [no_kid]}}), "jwkSet")
        assert_invalid(api.post(url, json={"name": "x", "jwksURL": "ftp://k.example/"}), "jwksURL")
        for flag in ("Production", "Staging"):
            plain = {"name": "x", "jwksURL": "http://keys.example/jwks.json"}
            assert_invalid(api.post(env_apikeys(org.envs[flag]), json=plain), "jwksURL")
        made = api.post(
            env_apikeys(org.prod), json={"name": "x", "jwksURL": "https://keys.example/jwks"}
        )
        assert made.status_code == 201, made.text
        elsewhere = env_apikeys(str(uuid.uuid4()))
        assert_problem(api.post(elsewhere, json={"name": "x", "jwkSet": {"keys": [rsa_jwk]}}), 404)


def test_apikey_with_a_jwks_url_is_fetched_and_kept(org: Org) -> None:
    rt = runtime_of(org.server)
    first, second = new_rsa(), new_rsa()
    with JwksServer(public_jwk(first, "one")) as keys:
        apikey = create_apikey(org, {"name": "Rotating", "jwksURL": keys.url})
        assert apikey["jwksURL"] == keys.url and apikey["jwkSet"] is None
        assert keys.fetches == 0  # nothing is fetched while the key is created

        def exchange(key: Any, kid: str) -> Any:
            signed = assertion(
                key, client_id=apikey["id"], aud=url_of(org.server, V2), alg="RS384", kid=kid
            )
            return token_request(org.server, V2, signed)

        assert exchange(first, "one").status_code == 200
        assert exchange(first, "one").status_code == 200
        assert keys.fetches == 1  # kept

        # The source rotates its keys. An unknown kid fetches again, at most once a minute.
        keys.publish(public_jwk(second, "two"))
        assert refused(exchange(second, "two")) == KEY_NOT_FOUND
        assert keys.fetches == 1
        moment = rt.jwks.clock()
        rt.jwks.clock = lambda: moment + 61
        try:
            assert exchange(second, "two").status_code == 200
            assert keys.fetches == 2
            assert refused(exchange(first, "one")) == KEY_NOT_FOUND
            rt.jwks.clock = lambda: moment + 61 + 301  # kept five minutes, then fetched again
            assert exchange(second, "two").status_code == 200
            assert keys.fetches == 3
        finally:
            rt.jwks.clock = __import__("time").monotonic

    # The key server is gone: with nothing kept, the refusal says why.
    gone = create_apikey(org, {"name": "Gone", "jwksURL": keys.url})
    signed = assertion(
        first, client_id=gone["id"], aud=url_of(org.server, V2), alg="RS384", kid="one"
    )
    rt.jwks.forget(keys.url)
    assert refused(token_request(org.server, V2, signed)).startswith(KEY_NOT_FOUND)


def test_source_auth_v2_with_public_keys(org: Org) -> None:
    rsa_key, ec_key = new_rsa(), new_ec384()
    apikey = create_apikey(
        org,
        {"name": "v2", "jwkSet": {"keys": [public_jwk(rsa_key, "r"), public_jwk(ec_key, "e")]}},
    )
    aud = url_of(org.server, OAUTH)
    for key, kid, alg in ((rsa_key, "r", "RS384"), (ec_key, "e", "ES384")):
        answer = token_request(
            org.server, OAUTH, assertion(key, client_id=apikey["id"], aud=aud, alg=alg, kid=kid)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["expires_in"] == 300
        sending = sending_source(org.server, answer.json()["access_token"])
        assert sending is not None and sending.id == apikey["id"]

    # Source Auth v2 takes RS384 and ES384 only; aud is its own URL; a jti is used once.
    rs256 = assertion(rsa_key, client_id=apikey["id"], aud=aud, alg="RS256", kid="r")
    assert "alg" in refused(token_request(org.server, OAUTH, rs256))
    v2_aud = assertion(
        rsa_key, client_id=apikey["id"], aud=url_of(org.server, V2), alg="RS384", kid="r"
    )
    assert "aud" in refused(token_request(org.server, OAUTH, v2_aud))
    once = assertion(ec_key, client_id=apikey["id"], aud=aud, alg="ES384", kid="e")
    assert token_request(org.server, OAUTH, once).status_code == 200
    assert "already used" in refused(token_request(org.server, OAUTH, once))
    stranger = assertion(ec_key, client_id=str(uuid.uuid4()), aud=aud, alg="ES384", kid="e")
    assert refused(token_request(org.server, OAUTH, stranger)) == KEY_NOT_FOUND
    with org.server.client() as client:
        as_json = client.post(OAUTH, json={"grant_type": "client_credentials"})
    assert refused(as_json, 400) == "x-www-form-urlencoded content-type required"


def test_source_auth_v2_with_a_legacy_secret(org: Org) -> None:
    source = create_source(org)
    aud = url_of(org.server, OAUTH)

    def exchange(secret: str, alg: str = "HS384", **extra: Any) -> Any:
        signed = assertion(secret, client_id=source["id"], aud=aud, alg=alg, **extra)
        return token_request(org.server, OAUTH, signed)

    answer = exchange(source["secret"])  # no kid needed: the source has one secret
    assert answer.status_code == 200, answer.text
    sending = sending_source(org.server, answer.json()["access_token"])
    assert sending is not None and sending.id == source["id"]
    assert exchange(source["secret"], kid="any").status_code == 200

    assert "Signature" in refused(exchange(source["secret"][:-1] + "A" * 8))
    assert "alg" in refused(exchange(source["secret"], alg="HS256", kid="k"))
    once = assertion(source["secret"], client_id=source["id"], aud=aud, alg="HS384")
    assert token_request(org.server, OAUTH, once).status_code == 200
    assert "already used" in refused(token_request(org.server, OAUTH, once))
    wrong_aud = assertion(
        source["secret"], client_id=source["id"], aud=url_of(org.server, V2), alg="HS384"
    )
    assert "aud" in refused(token_request(org.server, OAUTH, wrong_aud))

    # After a rotation the old secret signs for its grace period, then no more.
    with org.client() as api:
        new = api.post(f"{source_url(source['id'])}/secret").json()["payload"]["source"]["secret"]
    assert exchange(new).status_code == 200
    assert exchange(source["secret"]).status_code == 200
    set_source_columns(
        org.server, source["id"], previous_secret_expires_at="2000-01-01T00:00:00.000000Z"
    )
    assert "Signature" in refused(exchange(source["secret"]))
    assert exchange(new).status_code == 200
