"""Every route refuses callers without credentials (401) and of the wrong kind (403)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from registry.app import Operation, operations

if TYPE_CHECKING:
    from conftest import World

# The only routes anyone may call: a PIC asks to register, follows the request by its id,
# activates with the one-time token (the credential is in the body), everyone logs in;
# health tells a load balancer.
PUBLIC = {
    "POST /api/v1/facilities/requests",
    "GET /api/v1/facilities/requests/{facility_id}",
    "POST /api/v1/facilities/{facility_id}/activate",
    "POST /api/v1/login",
    "GET /api/v1/health",
    # The link's token, and the wallet's own credential, checked by the route itself
    # (tests/registry/test_wallet_api.py).
    "POST /api/v1/wallet/activate",
    "GET /api/v1/wallet/pass",
    # Phone check-ins, with the wallet's credential (tests/test_phone_checkins.py).
    "POST /api/v1/wallet/checkins",
    "GET /api/v1/wallet/checkins/{checkin_id}",
}
OPERATIONS = operations()


def url(world: World, op: Operation) -> str:
    kid = world.registry.keyring.current().kid_hex
    return op.full_path.format(
        facility_id=world.facility_id,
        door_id="main-in",
        subject="0" * 24,
        kid=kid,
        checkin_id="0" * 32,
    )


def call(
    world: World, op: Operation, headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, object]]:
    r = world.client.request(
        op.method, url(world, op), json={} if op.writes else None, headers=headers
    )
    return r.status_code, dict(r.headers), r.json()


def snapshot_of_state(world: World) -> tuple[object, ...]:
    store = world.registry.store
    return (
        len(store.audit_entries()),
        store.count_visits(),
        store.last_cursor(),
        world.registry.trust_document().etag,
        [(f.id, f.state) for f in store.list_facilities()],
    )


def test_public_routes_are_exactly_the_expected_ones() -> None:
    public = {f"{op.method} {op.full_path}" for op in OPERATIONS if op.public}
    assert public == PUBLIC
    assert all(op.auth for op in OPERATIONS if f"{op.method} {op.full_path}" not in PUBLIC)


@pytest.mark.parametrize("store_kind", ["sqlite"])  # refused before the store is asked
@pytest.mark.parametrize(
    "op", [op for op in OPERATIONS if not op.public], ids=lambda op: f"{op.method} {op.path}"
)
def test_every_route_refuses_missing_and_wrong_credentials(world: World, op: Operation) -> None:
    before = snapshot_of_state(world)
    for headers in (
        {},
        {"Authorization": "Bearer rs_not-a-token"},
        {"Authorization": "Basic ZGV3aTp4"},
    ):
        code, response_headers, body = call(world, op, headers)
        assert code == 401, (op.path, headers, body)
        assert body["error"] == "unauthenticated"
        assert response_headers["www-authenticate"].startswith("Bearer")
    tokens = {"operator": world.op, "pic": world.pic_h, "hub": world.hub_h}
    for kind, headers in tokens.items():
        if kind in op.auth:
            continue
        code, _, body = call(world, op, headers)
        assert code == 403, (op.path, kind, body)
        assert body["error"] == "forbidden" and kind in str(body["detail"])
    assert snapshot_of_state(world) == before


def test_login_logout_and_session_expiry(world: World) -> None:
    r = world.client.post("/api/v1/login", json={"username": "dewi", "password": "wrong password"})
    assert (r.status_code, r.json()["detail"]) == (401, "wrong user name or password")
    r = world.client.post(
        "/api/v1/login", json={"username": "nobody", "password": "wrong password"}
    )
    assert (r.status_code, r.json()["detail"]) == (401, "wrong user name or password")
    token = world.login("dewi")
    headers = {"Authorization": f"Bearer {token}"}
    assert world.client.get("/api/v1/me", headers=headers).json()["kind"] == "operator"
    assert world.client.post("/api/v1/logout", headers=headers).status_code == 204
    assert world.client.get("/api/v1/me", headers=headers).status_code == 401
    token = world.login("dewi")
    world.clock.advance(12 * 3600)
    r = world.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    # Hub tokens do not expire; they are replaced.
    assert world.client.get("/api/v1/me", headers=world.hub_h).status_code == 200
    assert world.client.post("/api/v1/logout", headers=world.hub_h).status_code == 403


def test_repeated_wrong_passwords_are_throttled(world: World) -> None:
    for _ in range(5):
        r = world.client.post("/api/v1/login", json={"username": "dewi", "password": "guess guess"})
        assert r.status_code == 401
    r = world.client.post(
        "/api/v1/login", json={"username": "dewi", "password": "correct horse battery"}
    )
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["error"] == "throttled"


def test_errors_for_unknown_routes_methods_and_media(world: World) -> None:
    r = world.client.get("/api/v1/nothing")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = world.client.delete("/api/v1/trust", headers=world.hub_h)
    assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")
    r = world.client.post(
        "/api/v1/login",
        content=b"username=dewi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (r.status_code, r.json()["error"]) == (415, "unsupported_media_type")
    r = world.client.post(
        "/api/v1/login",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]) == (413, "too_large")
    r = world.client.get("/api/v1/health")
    assert r.json()["ok"] is True
