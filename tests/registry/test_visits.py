"""Visit intake from hubs (idempotent, all or nothing), tracing, and retention."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from pintu.cli import cli
from registry.models import TraceOut, VisitsOut
from registry.records import Visit

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import World

S = "5" * 24  # the subject being traced
X, Y, Z, W, Q = ("a" * 24, "b" * 24, "c" * 24, "d" * 24, "e" * 24)
DAY = 86_400


def visit(
    world: World,
    vid: str,
    subject: str,
    check_in: str,
    check_out: str,
    door: str = "main-in",
    facility: str | None = None,
) -> dict[str, Any]:
    return {
        "visit_id": vid,
        "facility_id": facility or world.facility_id,
        "subject": subject,
        "door_id": door,
        "check_in": f"2026-11-21T{check_in}Z",
        "check_out": f"2026-11-21T{check_out}Z",
    }


def push(
    world: World, rows: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    r = world.client.post("/api/v1/visits", json=rows, headers=headers or world.hub_h)
    return r.status_code, r.json()


def test_push_is_idempotent_by_visit_id(world: World) -> None:
    rows = [
        visit(world, "v1", S, "10:00:00", "11:00:00"),
        visit(world, "v2", X, "10:05:00", "10:20:00"),
    ]
    code, body = push(world, rows)
    assert code == 200, body
    assert VisitsOut.model_validate(body) == VisitsOut(
        received=2, stored=2, duplicates=0, duplicate_ids=[]
    )
    code, body = push(world, rows)  # the hub did not see the answer and sends again
    assert (code, body["stored"], body["duplicates"], body["duplicate_ids"]) == (
        200,
        0,
        2,
        ["v1", "v2"],
    )
    code, body = push(world, [rows[1], visit(world, "v3", Y, "10:30:00", "10:45:00")])
    assert (body["stored"], body["duplicates"]) == (1, 1)
    assert world.registry.store.count_visits() == 3
    # Times are kept to the second: check-in rounded down, check-out up.
    code, body = push(
        world,
        [
            {
                **visit(world, "v4", Y, "12:00:00", "12:00:00"),
                "check_in": "2026-11-21T12:00:00.900Z",
                "check_out": "2026-11-21T12:10:00.100+00:00",
            }
        ],
    )
    assert code == 200
    (stored,) = [v for v in world.registry.store.visits_of(Y, 0, 2**31) if v.visit_id == "v4"]
    assert stored.check_out - stored.check_in == 601


def test_same_id_with_other_content_is_a_conflict_and_stores_nothing(world: World) -> None:
    push(world, [visit(world, "v1", S, "10:00:00", "11:00:00")])
    code, body = push(
        world,
        [
            visit(world, "v9", X, "10:00:00", "11:00:00"),
            visit(world, "v1", S, "10:00:00", "11:30:00"),
        ],
    )
    assert (code, body["error"]) == (409, "conflict")
    assert "row 1: visit_id 'v1'" in body["detail"]
    assert world.registry.store.count_visits() == 1


def test_another_facilitys_visits_are_403_and_nothing_is_stored(world: World) -> None:
    other_id, other_pic, other_hub = world.add_facility("Mall Lain", "lain@example.com")
    world.add_door(other_id, "main-in", "entrance", other_pic)
    rows = [
        visit(world, "v1", S, "10:00:00", "11:00:00"),
        visit(world, "v2", X, "10:00:00", "11:00:00", facility=other_id),
    ]
    code, body = push(world, rows)
    assert (code, body["error"]) == (403, "forbidden")
    assert f"visits[1].facility_id: '{other_id}'" in body["detail"]
    code, body = push(world, rows, {"Authorization": f"Bearer {other_hub}"})
    assert code == 403 and "visits[0].facility_id" in body["detail"]
    assert world.registry.store.count_visits() == 0


BAD_ROWS = [
    ({"subject": "XYZ"}, "visits[1].subject"),
    ({"subject": None}, "visits[1].subject"),
    ({"visit_id": ""}, "visits[1].visit_id"),
    ({"check_in": "yesterday"}, "visits[1].check_in"),
    ({"check_in": "2026-11-21T10:00:00"}, "visits[1].check_in"),  # no offset
    ({"check_out": "2026-11-21T09:00:00Z"}, "visits[1].check_out"),  # before check-in
    ({"check_out": "2026-11-22T11:00:01Z"}, "visits[1].check_out"),  # longer than 24 h
    ({"check_out": "2026-11-22T08:06:00Z"}, "visits[1].check_out"),  # in the future
    ({"door_id": "back-door"}, "visits[1].door_id"),  # not a registered door
    ({"door_id": "a/b"}, "visits[1].door_id"),
    ({"visit_id": "v1"}, "visits[1].visit_id"),  # repeats row 0 in the same batch
    ({"colour": "green"}, "visits[1].colour"),
]


@pytest.mark.parametrize("store_kind", ["sqlite"])  # refused before the store is asked
@pytest.mark.parametrize(("change", "field"), BAD_ROWS, ids=[f for _, f in BAD_ROWS])
def test_a_malformed_row_names_row_and_field_and_stores_nothing(
    world: World, change: dict[str, Any], field: str
) -> None:
    rows = [
        visit(world, "v1", S, "10:00:00", "11:00:00"),
        {**visit(world, "v2", X, "10:00:00", "11:00:00"), **change},
    ]
    code, body = push(world, rows)
    assert (code, body["error"]) == (422, "invalid"), body
    assert body["detail"].startswith(field), body["detail"]
    assert body["problems"][0]["field"] == field
    assert world.registry.store.count_visits() == 0


def test_a_missing_field_and_bodies_that_are_not_batches(world: World) -> None:
    row = visit(world, "v1", S, "10:00:00", "11:00:00")
    del row["check_out"]
    code, body = push(world, [row])
    assert code == 422 and body["problems"][0]["field"] == "visits[0].check_out"
    code, body = push(world, {"visits": []})
    assert code == 422 and body["problems"][0]["field"] == "visits"
    r = world.client.post(
        "/api/v1/visits", content=b"[{", headers={**world.hub_h, "Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    r = world.client.post(
        "/api/v1/visits", content=b"[]", headers={**world.hub_h, "Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    code, body = push(world, [row] * 10_001)
    assert (code, body["error"]) == (413, "too_large")
    assert world.registry.store.count_visits() == 0


def hand_made(world: World) -> str:
    """Visits with known overlaps; the second facility's id."""
    b_id, b_pic, b_hub = world.add_facility("Klinik B", "b@example.com")
    world.add_door(b_id, "gate", "entrance", b_pic)
    code, body = push(
        world,
        [
            visit(world, "s1", S, "10:00:00", "11:00:00"),
            visit(world, "x1", X, "09:30:00", "10:15:00"),  # 10:00-10:15: 900 s
            visit(world, "x2", X, "10:50:00", "10:55:00", door="main-out"),  # 300 s more
            visit(world, "y1", Y, "10:30:00", "12:00:00"),  # 10:30-11:00: 1800 s
            visit(world, "z1", Z, "11:00:00", "11:30:00"),  # begins as S leaves: no overlap
            visit(world, "w1", W, "08:00:00", "10:00:00"),  # leaves as S comes: no overlap
            visit(world, "q1", Q, "05:00:00", "12:00:00"),  # began long before: 3600 s
        ],
    )
    assert code == 200, body
    code, body = push(
        world,
        [
            visit(world, "s2", S, "14:00:00", "14:30:00", door="gate", facility=b_id),
            visit(world, "y2", Y, "14:10:00", "14:20:00", door="gate", facility=b_id),  # 600 s
            visit(
                world, "x3", X, "10:00:00", "11:00:00", door="gate", facility=b_id
            ),  # S not there
        ],
        {"Authorization": f"Bearer {b_hub}"},
    )
    assert code == 200, body
    return b_id


def test_tracing_on_a_hand_made_example(world: World) -> None:
    b_id = hand_made(world)
    r = world.client.get(f"/api/v1/tracing?subject={S}", headers=world.op)
    assert r.status_code == 200, r.text
    trace = TraceOut.model_validate(r.json())
    assert trace.contact_count == 3
    assert [f.facility_id for f in trace.facilities] == [world.facility_id, b_id]
    a, b = trace.facilities
    assert [v.visit_id for v in a.visits] == ["s1"]
    assert [(c.subject, c.overlap_seconds) for c in a.contacts] == [(Q, 3600), (Y, 1800), (X, 1200)]
    x = a.contacts[2]
    assert [(o.contact_visit_id, o.start, o.end, o.seconds) for o in x.overlaps] == [
        ("x1", "2026-11-21T10:00:00Z", "2026-11-21T10:15:00Z", 900),
        ("x2", "2026-11-21T10:50:00Z", "2026-11-21T10:55:00Z", 300),
    ]
    assert x.overlaps[1].contact_door_id == "main-out"
    assert [(c.subject, c.overlap_seconds) for c in b.contacts] == [(Y, 600)]
    assert (b.contacts[0].overlaps[0].start, b.contacts[0].overlaps[0].end) == (
        "2026-11-21T14:10:00Z",
        "2026-11-21T14:20:00Z",
    )
    # A window that holds only the afternoon.
    r = world.client.get(
        f"/api/v1/tracing?subject={S}&from=2026-11-21T13:00:00Z&to=2026-11-21T15:00:00%2B00:00",
        headers=world.op,
    )
    assert [f["facility_id"] for f in r.json()["facilities"]] == [b_id]
    # Somebody with no visits: an empty answer.
    r = world.client.get(f"/api/v1/tracing?subject={'f' * 24}", headers=world.op)
    assert r.json()["facilities"] == [] and r.json()["contact_count"] == 0


def test_tracing_csv_export(world: World) -> None:
    hand_made(world)
    r = world.client.get(f"/api/v1/tracing?subject={S}&format=csv", headers=world.op)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert f"trace-{S}.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5
    assert sorted((row["contact_subject"][:1], int(row["overlap_seconds"])) for row in rows) == [
        ("a", 300),
        ("a", 900),
        ("b", 600),
        ("b", 1800),
        ("e", 3600),
    ]
    q = next(row for row in rows if row["contact_subject"] == Q)
    assert (q["overlap_start"], q["overlap_end"], q["facility_name"]) == (
        "2026-11-21T10:00:00Z",
        "2026-11-21T11:00:00Z",
        "Mall Kelapa",
    )


@pytest.mark.parametrize("store_kind", ["sqlite"])  # refused before the store is asked
@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", 400),
        ("subject=XYZ", 400),
        (f"subject={S}&from=yesterday", 400),
        (f"subject={S}&format=xml", 400),
        (f"subject={S}&from=2026-11-21T12:00:00Z&to=2026-11-21T11:00:00Z", 422),
    ],
)
def test_bad_tracing_queries(world: World, query: str, code: int) -> None:
    assert world.client.get(f"/api/v1/tracing?{query}", headers=world.op).status_code == code


def test_purge_removes_only_visits_past_the_window(world: World, config_file: Path) -> None:
    push(
        world,
        [
            visit(world, "old", S, "10:00:00", "11:00:00"),
            visit(world, "edge", X, "10:00:00", "11:00:01"),
            visit(world, "new", Y, "12:00:00", "13:00:00"),
        ],
    )
    # 21 days and a second after 2026-11-21T11:00:00Z: "old" ended before the window.
    world.clock.now = world.clock.now + 20 * DAY + 3 * 3600 + 1
    world.operator = world.login("dewi")
    r = world.client.post("/api/v1/purge", headers=world.op)
    assert r.status_code == 200
    assert r.json()["visits"] == 1 and r.json()["before"] == "2026-11-21T11:00:01Z"
    left = {
        v.visit_id
        for subject in (S, X, Y)
        for v in world.registry.store.visits_of(subject, 0, 2**31)
    }
    assert left == {"edge", "new"}
    # The CLI's purge runs on the real clock.
    now = int(time.time())
    world.registry.store.add_visits(
        world.facility_id,
        [Visit(world.facility_id, "ancient", Z, "main-in", now - 22 * DAY - 600, now - 22 * DAY)],
        now,
    )
    r = CliRunner().invoke(cli, ["registry", "purge", "--config", str(config_file), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["visits"] == 1
    assert world.registry.store.visits_of(Z, 0, 2**31) == []
