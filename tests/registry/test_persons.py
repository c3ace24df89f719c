"""Persons and statuses: CSV import (CLI and API), the status feed, the snapshot, lookups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from pintu.cli import cli
from protocol.status import Status
from protocol.statuslist import StatusList
from registry.models import FeedOut, ImportOut, LookupOut
from registry.records import Outcome
from registry.service import Registry

if TYPE_CHECKING:
    from conftest import World

WOMAN = "3174054512900001"
MAN = "3174050101900002"

CSV = """nik,name,status,doses
3174054512900001,Siti Rahayu,green,2
3174050101900002,Budi Santoso,red,0
31740501019000,Short Nik,green,2
9974050101900003,Bad Province,green,2
3174053201900004,Bad Day,green,2
3174050113900005,Bad Month,green,2
3174050101900006,,green,2
3174050101900007,Bad Status,purple,2
3174050101900008,Bad Doses,green,two
3174050101900009,Too Many,green,2,extra
3174050101900010,Too Few,green
"3273011507850011","Quoted, Name",yellow,1
"""
BAD_LINES = {
    4: "nik: a NIK has 16 digits",
    5: "nik: province code 99",
    6: "nik: day of birth 32",
    7: "nik: month of birth 13",
    8: "name: the name is empty",
    9: "status: unknown status 'purple'",
    10: "doses: 'two' is not a whole number",
    11: "more than 4 fields",
    12: "too few fields: no doses",
}


def test_cli_import_reports_each_bad_line_and_applies_the_good_ones(
    config_file: Path, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(CSV)
    result = CliRunner().invoke(
        cli, ["registry", "import-csv", "--config", str(config_file), str(people), "--json"]
    )
    assert result.exit_code == 1, result.output  # some rows were rejected
    report = ImportOut.model_validate(json.loads(result.stdout))
    assert (report.rows, report.created, report.rejected) == (12, 3, 9)
    assert {e.line: e.reason for e in report.errors}.keys() == BAD_LINES.keys()
    for error in report.errors:
        assert error.reason.startswith(BAD_LINES[error.line]), error
    # Human output names FILE:LINE for each bad row, then the counts.
    result = CliRunner().invoke(
        cli, ["registry", "import-csv", "--config", str(config_file), str(people)]
    )
    assert f"{people}:9: status: unknown status 'purple'" in result.stdout
    assert "12 rows: 0 created, 0 updated, 0 renamed, 3 unchanged, 9 rejected" in result.stdout


def test_bad_header_refuses_the_whole_file(world: World) -> None:
    for text, reason in [
        ("nik,name,status\n3174054512900001,Siti,green\n", "no column 'doses'"),
        ("nik,name,status,doses,age\n", "unknown column 'age'"),
        ("", "the file is empty"),
    ]:
        r = world.client.post(
            "/api/v1/persons/import",
            content=text,
            headers={**world.op, "Content-Type": "text/csv"},
        )
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"]
    assert world.client.get("/api/v1/statuses", headers=world.op).json()["changes"] == []


def test_api_import_then_feed_and_lookup(world: World) -> None:
    r = world.client.post(
        "/api/v1/persons/import", content=CSV, headers={**world.op, "Content-Type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    report = ImportOut.model_validate(r.json())
    assert (report.created, report.rejected) == (3, 9)
    feed = FeedOut.model_validate(world.client.get("/api/v1/statuses", headers=world.hub_h).json())
    assert [c.status for c in feed.changes] == ["green", "red", "yellow"]
    assert feed.more is False
    siti = world.registry.subject_of(WOMAN)
    assert feed.changes[0].subject == siti
    # The staff desk's lookup: both NIK and name must match; one answer for both misses.
    ask = {"nik": "3174 0545 1290 0001", "name": "siti  rahayu"}
    found = LookupOut.model_validate(
        world.client.post("/api/v1/lookup", json=ask, headers=world.hub_h).json()
    )
    assert (found.found, found.subject, found.status, found.doses) == (True, siti, "green", 2)
    wrong_name = world.client.post(
        "/api/v1/lookup", json={"nik": WOMAN, "name": "Budi"}, headers=world.hub_h
    ).json()
    unknown = world.client.post(
        "/api/v1/lookup", json={"nik": "3174050101900099", "name": "Budi"}, headers=world.hub_h
    ).json()
    assert (
        wrong_name
        == unknown
        == {
            "found": False,
            "subject": None,
            "status": None,
            "doses": None,
            "changed_at": None,
        }
    )


def test_feed_pages_with_a_cursor(world: World) -> None:
    nik = [f"31740501019{i:05d}" for i in range(1, 26)]
    for i, n in enumerate(nik):
        world.registry.set_person(n, f"Person {i}", Status.GREEN, 2, "test")
    world.clock.advance(60)
    # Five change again: they appear again, later in the feed.
    for n in nik[:5]:
        world.registry.set_person(n, "Renamed only", Status.GREEN, 2, "test")  # not a change
        world.registry.set_person(n, "Renamed only", Status.BLACK, 2, "test")
    seen: list[tuple[str, str, int]] = []
    since, pages = 0, 0
    while True:
        r = world.client.get(f"/api/v1/statuses?since={since}&limit=7", headers=world.hub_h)
        assert r.status_code == 200, r.text
        page = FeedOut.model_validate(r.json())
        pages += 1
        assert len(page.changes) <= 7
        seen += [(c.subject, c.status, c.cursor) for c in page.changes]
        if page.changes:
            assert page.next == page.changes[-1].cursor
        since = page.next
        if not page.more:
            break
    assert pages == 5  # 30 changes: 7 + 7 + 7 + 7 + 2
    cursors = [c for _, _, c in seen]
    assert cursors == sorted(cursors) and len(set(cursors)) == 30
    assert [s for _, s, _ in seen[-5:]] == ["black"] * 5
    # Nothing new: an empty page that keeps the cursor.
    r = world.client.get(f"/api/v1/statuses?since={since}", headers=world.hub_h)
    assert r.json() == {"changes": [], "next": since, "more": False}


@pytest.mark.parametrize("store_kind", ["sqlite"])  # refused before the store is asked
@pytest.mark.parametrize(
    "query", ["since=-1", "since=x", "limit=0", "limit=10001", "sinse=3", "since=1&since=2"]
)
def test_bad_feed_parameters_are_400(world: World, query: str) -> None:
    r = world.client.get(f"/api/v1/statuses?{query}", headers=world.hub_h)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"


def test_snapshot_is_a_status_list_matching_the_feed(world: World) -> None:
    world.registry.set_person(WOMAN, "Siti", Status.GREEN, 2, "test")
    world.clock.advance(10)
    world.registry.set_person(MAN, "Budi", Status.BLACK, 2, "test")
    r = world.client.get("/api/v1/statuses/snapshot", headers=world.hub_h)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-pintu-cursor"] == "2"
    status_list = StatusList.loads(r.content)
    assert len(status_list) == 2
    entry = status_list.lookup(bytes.fromhex(world.registry.subject_of(MAN)))
    assert entry is not None and entry.status is Status.BLACK
    assert entry.changed_at == int(world.clock.now)
    again = world.client.get(
        "/api/v1/statuses/snapshot", headers={**world.hub_h, "If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304


def test_person_api_outcomes(world: World) -> None:
    body = {"nik": WOMAN, "name": "Siti", "status": "yellow", "doses": 1}
    r = world.client.post("/api/v1/persons", json=body, headers=world.op)
    assert r.status_code == 201 and r.json()["outcome"] == "created"
    r = world.client.post("/api/v1/persons", json=body, headers=world.op)
    assert r.status_code == 200 and r.json()["outcome"] == "unchanged"
    r = world.client.post("/api/v1/persons", json={**body, "doses": 2}, headers=world.op)
    assert r.json()["outcome"] == "updated"
    subject = r.json()["subject"]
    r = world.client.get(f"/api/v1/persons/{subject}", headers=world.op)
    assert r.status_code == 200 and r.json()["name"] == "Siti"
    r = world.client.post(
        "/api/v1/persons", json={**body, "nik": "1074054512900001"}, headers=world.op
    )
    assert r.status_code == 422 and "province code 10" in r.json()["detail"]
    # As the error table promises of every 422: the problems, by field.
    assert r.json()["problems"] == [
        {"field": "nik", "message": "province code 10 is not one of 11..94"}
    ]
    r = world.client.post("/api/v1/persons", json={**body, "name": " \t "}, headers=world.op)
    assert r.status_code == 422
    assert r.json()["problems"] == [{"field": "name", "message": "the name is empty"}]
    r = world.client.post("/api/v1/persons", json={**body, "doses": 21}, headers=world.op)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "doses"
    r = world.client.get("/api/v1/persons/" + "0" * 24, headers=world.op)
    assert r.status_code == 404
    assert len(world.client.get("/api/v1/statuses", headers=world.op).json()["changes"]) == 2


def test_apply_persons_in_one_batch_keeps_order(registry: Registry) -> None:
    from registry.records import PersonRow

    s = registry.subject_of(WOMAN)
    rows = [
        PersonRow(s, "Siti", Status.RED, 0),
        PersonRow(s, "Siti", Status.YELLOW, 1),
        PersonRow(s, "Siti R", Status.YELLOW, 1),
        PersonRow(s, "Siti R", Status.YELLOW, 1),
    ]
    outcomes = registry.store.apply_persons(rows, 100)
    assert outcomes == [Outcome.CREATED, Outcome.UPDATED, Outcome.RENAMED, Outcome.UNCHANGED]
    person = registry.store.get_person(s)
    assert person is not None and (person.name, person.status) == ("Siti R", Status.YELLOW)
    assert [c.status for c in registry.store.changes_since(0, 10)] == [Status.RED, Status.YELLOW]
