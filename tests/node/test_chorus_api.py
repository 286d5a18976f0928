"""The chorus JSON API (/api/chorus/v1/): its endpoints, its error format, its OpenAPI
document (checked by schemathesis against a real daemon), and the public listener."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method
from starlette.applications import Starlette

from node import chorus_api
from node.chorus_api import (
    API_PREFIX,
    Operation,
    api_description,
    chorus_api_routes,
    openapi_document,
)
from node.identity import load_identity
from tests.daemons import DaemonProcess
from tests.node.test_auth import (
    ListeningDaemon,
    asgi_call,
    bearer,
    request,
    token_of,
)

COOP = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def get(node: DaemonProcess, path: str, **kwargs: Any) -> Any:
    answer = request(node.api, "GET", API_PREFIX + path, **kwargs)
    assert answer.status == 200, (path, answer.status, answer.body)
    assert answer.headers["Content-Type"] == "application/json"
    return answer.json()


def assert_error(answer, status: int, code: str) -> dict[str, Any]:
    """The chorus error format: exactly {"error": {"code", "message"}}."""
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[DaemonProcess, DaemonProcess, str, Path]]:
    """Two daemons in one co-op; B fetched a track A holds. Yields (a, b, cid, track)."""
    tmp = tmp_path_factory.mktemp("chorus-api")
    a = DaemonProcess(tmp / "a", coop=COOP, dht=False).start()
    b = DaemonProcess(tmp / "b", coop=COOP, dht=False).start()
    try:
        track = tmp / "track.bin"
        track.write_bytes(os.urandom(700_000))
        cid = a.add(track)
        b.connect(a)
        b.cli("get", cid, "-o", str(tmp / "got.bin"))
        yield a, b, cid, track
    finally:
        b.stop()
        a.stop()


@pytest.mark.integration
def test_node(pair) -> None:
    a, _, _, _ = pair
    node = get(a, "/node")
    ident = a.cli_json("id", "--json")
    assert node["peer_id"] == a.peer_id == ident["ID"]
    assert node["public_key"] == bytes(load_identity(a.data).verify_key).hex()
    assert a.addr in node["addresses"]
    assert node["version"] and node["agent"].startswith("chorus/")
    assert node["coop"]["genesis"] == COOP
    topic = request(a.api, "POST", "/api/v0/pubsub/ls").json()["Strings"][0]
    assert node["coop"]["topic"] == topic


@pytest.mark.integration
def test_peers_show_bytes_both_ways(pair) -> None:
    a, b, _, _ = pair
    on_b = {p["peer_id"]: p for p in get(b, "/peers")["peers"]}
    seen_a = on_b[a.peer_id]
    assert seen_a["connected"] is True
    assert seen_a["exchange"]["bytes_received"] >= 700_000
    assert seen_a["exchange"]["blocks_received"] >= 3
    assert seen_a["penalty"] is None
    assert seen_a["addresses"]
    on_a = {p["peer_id"]: p for p in get(a, "/peers")["peers"]}
    assert on_a[b.peer_id]["exchange"]["bytes_sent"] == seen_a["exchange"]["bytes_received"]
    assert on_a[b.peer_id]["protocol"].startswith("/ipfs/bitswap/")


@pytest.mark.integration
def test_pins_and_store(pair) -> None:
    a, _, cid, _ = pair
    roots = get(a, "/pins")["pins"]
    assert {"cid": cid, "type": "recursive"} in roots
    assert all(p["type"] != "indirect" for p in roots)
    everything = get(a, "/pins?type=roots")["pins"]
    assert everything == roots
    full = request(a.api, "GET", f"{API_PREFIX}/pins?type=all").json()["pins"]
    assert len([p for p in full if p["type"] == "indirect"]) == 3  # 700 kB: 3 chunks
    assert request(a.api, "GET", f"{API_PREFIX}/pins?type=direct").json() == {"pins": []}
    bad = assert_error(request(a.api, "GET", f"{API_PREFIX}/pins?type=bogus"), 400,
                       "bad_request")
    assert "bogus" in bad["message"]

    store = get(a, "/store")
    stat = request(a.api, "POST", "/api/v0/repo/stat").json()
    assert (store["blocks"], store["bytes"]) == (stat["NumObjects"], stat["RepoSize"])
    assert store["blocks"] == 4 and store["quota"] is None and store["free"] is None


@pytest.mark.integration
def test_the_error_format(pair) -> None:
    a, _, _, _ = pair
    token = token_of(a)
    missing = assert_error(request(a.api, "GET", f"{API_PREFIX}/no-such-thing"), 404,
                           "not_found")
    assert "openapi.json" in missing["message"]
    not_allowed = request(a.api, "DELETE", f"{API_PREFIX}/store", headers=bearer(token))
    assert_error(not_allowed, 405, "method_not_allowed")
    assert "GET" in not_allowed.headers["Allow"]
    unauthorized = request(a.api, "POST", f"{API_PREFIX}/store")
    assert_error(unauthorized, 401, "unauthorized")
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(request(a.api, "POST", f"{API_PREFIX}/store",
                         headers=bearer(secrets.token_urlsafe(32))), 401, "unauthorized")
    big = b"{" + b" " * (1024 * 1024) + b"}"
    assert_error(request(a.api, "POST", f"{API_PREFIX}/plays", body=big,
                         headers={**bearer(token), "Content-Type": "application/json"}),
                 413, "payload_too_large")
    # Without the token, a big body is refused for the token before it is read.
    assert_error(request(a.api, "POST", f"{API_PREFIX}/plays", body=big), 401, "unauthorized")


@pytest.mark.integration
def test_the_openapi_document(pair) -> None:
    a, _, _, _ = pair
    doc = get(a, "/openapi.json")
    assert doc["openapi"] == "3.1.0"
    ledger = ("ledger", "ledger/heads", "ledger/entries", "ledger/entries/{id}", "ledger/log",
              "ledger/submit", "ledger/submit-batch", "ledger/tree-heads", "ledger/tree-head",
              "ledger/proof/inclusion/{id}", "ledger/proof/consistency", "ledger/export",
              "ledger/verify", "ledger/sync")
    coop = ("coop", "tally", "wallets/{key}", "proposals")
    web = ("releases", "keys", "plays/progress", "ballots")
    swarm = ("swarm/blocked",)  # node/swarm_api.py
    assert set(doc["paths"]) == {
        f"{API_PREFIX}/{name}"
        for name in ("node", "peers", "pins", "store", "openapi.json", *ledger, *coop, *web,
                     *swarm)
    }
    assert doc["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"


@pytest.mark.integration
def test_the_public_listener_serves_reads_only(tmp_path: Path) -> None:
    node = ListeningDaemon(tmp_path / "node", gateway="127.0.0.1:0", dht=False).start()
    try:
        assert node.gateway and node.gateway != node.api
        public = request(node.gateway, "GET", f"{API_PREFIX}/node")
        assert public.status == 200 and public.json()["peer_id"] == node.peer_id
        doc = request(node.gateway, "GET", f"{API_PREFIX}/openapi.json").json()
        assert all(set(item) == {"get"} for item in doc["paths"].values())
        # Nothing local-only is there, even with the token.
        token = token_of(node)
        assert request(node.gateway, "POST", "/api/v0/version").status == 404
        assert request(node.gateway, "POST", "/api/v0/add", headers=bearer(token)).status == 404
        assert request(node.gateway, "GET", "/metrics").status == 404
    finally:
        node.stop()


# -- public=True mounts only GET operations (checked with a write operation added) -------


async def test_public_mounts_only_get_operations(monkeypatch) -> None:
    async def ok(request) -> dict[str, Any]:
        return {"ok": True}

    table = [
        Operation("GET", "/thing", "getThing", "a read", ok, {"type": "object"}),
        Operation("POST", "/thing", "postThing", "a write", ok, {"type": "object"}),
    ]
    monkeypatch.setattr(chorus_api, "operations", lambda daemon: table)

    local = Starlette(routes=chorus_api_routes(None, public=False))
    public = Starlette(routes=chorus_api_routes(None, public=True))
    assert (await asgi_call(local, "POST", f"{API_PREFIX}/thing"))[0] == 200
    status, headers, body = await asgi_call(public, "POST", f"{API_PREFIX}/thing")
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    assert set(headers[b"allow"].decode().split(", ")) == {"GET", "HEAD"}
    assert (await asgi_call(public, "GET", f"{API_PREFIX}/thing"))[0] == 200
    _, _, raw = await asgi_call(public, "GET", f"{API_PREFIX}/openapi.json")
    assert set(json.loads(raw)["paths"][f"{API_PREFIX}/thing"]) == {"get"}
    doc = openapi_document(table)
    write = doc["paths"][f"{API_PREFIX}/thing"]["post"]
    assert write["security"] == [{"apiToken": []}]
    assert {"401", "403", "413", "500"} <= set(write["responses"])


async def test_a_handler_that_fails_answers_500_in_the_error_format(monkeypatch) -> None:
    async def broken(request) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    table = [Operation("GET", "/broken", "getBroken", "fails", broken, {"type": "object"})]
    monkeypatch.setattr(chorus_api, "operations", lambda daemon: table)

    app = Starlette(routes=chorus_api_routes(None))
    status, _, body = await asgi_call(app, "GET", f"{API_PREFIX}/broken")
    assert status == 500
    error = json.loads(body)["error"]
    assert error["code"] == "internal" and "secret detail" not in error["message"]


# -- schemathesis against a real daemon ------------------------------------------------------
#
# The schema is the document the daemon serves, built here from the same operation
# table (schemathesis needs it when tests are collected, before any daemon runs);
# test_the_served_document_is_the_one_tested checks the two are the same.

SERVED = api_description(cast(Any, None))[1]
# /ledger/submit-batch takes msgpack bytes: send what was generated for the binary
# string as it is (as for application/octet-stream).
schemathesis.serializer.alias("application/msgpack", "application/octet-stream")
schema = schemathesis.openapi.from_dict(SERVED)
CONTRACT_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def contract_node(tmp_path_factory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("contract")
    node = DaemonProcess(tmp / "node", dht=False).start()
    try:
        track = tmp / "t.bin"
        track.write_bytes(os.urandom(300_000))
        node.add(track)
        yield node
    finally:
        node.stop()


@pytest.mark.integration
def test_the_served_document_is_the_one_tested(contract_node: DaemonProcess) -> None:
    assert get(contract_node, "/openapi.json") == SERVED


@pytest.mark.integration
@schema.parametrize()
@CONTRACT_SETTINGS
def test_contract_for_the_owner(case, contract_node: DaemonProcess) -> None:
    """As the node's owner sees it (token, loopback): every check schemathesis has,
    but for /ledger/submit-batch "schema-valid data is accepted": its body is msgpack,
    which a binary-string schema cannot describe, so generated bytes are rightly 400
    (tests/node/test_ledger_api.py tests real and broken batches)."""
    excluded = [positive_data_acceptance] if case.path.endswith("/submit-batch") else []
    case.call_and_validate(base_url=contract_node.api, headers=bearer(token_of(contract_node)),
                           excluded_checks=excluded)


@pytest.mark.integration
@schema.parametrize()
@CONTRACT_SETTINGS
def test_contract_for_the_public(case, contract_node: DaemonProcess) -> None:
    """As anyone sees it (no token). An undeclared method is refused by the guard
    with 401 before routing (node/auth.py), so the 405 check does not apply."""
    case.call_and_validate(base_url=contract_node.api, excluded_checks=[unsupported_method])
