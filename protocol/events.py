"""Events and the other MQTT payloads, as strict models serialised to JSON at the edge.

Every payload carries ``v`` (its schema version). Unknown fields are refused, so a hub
never stores something it did not understand. ``docs/protocol.md`` documents each one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)

from protocol.errors import ProtocolError
from protocol.ids import EventId, Ident, SubjectHex
from protocol.model import StrictModel
from protocol.signals import Answer

SCHEMA_VERSION = 1

ShortText = Annotated[str, Field(max_length=200)]
# An event's text, stored by the hub: one line, no control characters (PostgreSQL cannot
# store a NUL in text at all).
EventText = Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
# What fits a signed 64-bit column (SQLite's INTEGER, PostgreSQL's bigint).
MAX_SEQ = 2**63 - 1


def wire_time(ts: datetime) -> str:
    """A time as Pintu's messages write it: RFC 3339 in UTC with milliseconds and ``Z``.

    One fixed width, so the text sorts like the time (the hub's store relies on it).
    """
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PayloadError(ProtocolError):
    """A payload is not JSON or does not follow its schema."""


class Payload(StrictModel):
    @classmethod
    def parse(cls, data: bytes | str) -> Any:
        """The payload in ``data``; ``PayloadError`` with a short reason if it is not one.

        Parsing is strict: a value of the wrong JSON type is refused, never converted
        (``"7"`` or ``7.0`` for an integer, ``1`` or ``"yes"`` for a boolean), and so is an
        explicit ``null``: an absent optional field is omitted.
        """
        try:
            payload = cls.model_validate_json(data, strict=True)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise PayloadError(f"{cls.__name__}: {where}: {first['msg']}") from err
        # JSON writes null only as the bare word: without it there is none to look for.
        word: Any = "null" if isinstance(data, str) else b"null"
        null = _explicit_null(payload) if word in data else None
        if null is not None:
            raise PayloadError(f"{cls.__name__}: {null}: null: leave an absent field out")
        return payload

    def dumps(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


def _explicit_null(model: BaseModel, where: str = "") -> str | None:
    """Where a payload gave a field as ``null`` (the fields it set that are None)."""
    for name in model.model_fields_set:
        value = getattr(model, name)
        if value is None:
            return f"{where}{name}"
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, BaseModel):
                inner = f"{where}{name}.{index}." if isinstance(value, list) else f"{where}{name}."
                found = _explicit_null(item, inner)
                if found is not None:
                    return found
    return None


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    return uuid.uuid4().hex


class EventKind(StrEnum):
    ENTRY = "entry"  # someone passed an entrance
    EXIT = "exit"  # someone passed an exit
    DENIED = "denied"  # a pass was refused
    NOT_PASSED = "not_passed"  # admitted, but nobody passed before the timeout
    ALARM = "alarm"  # black pass, forced door, camera failure...
    MANUAL = "manual"  # staff admitted someone by hand
    NODE_START = "node_start"
    NODE_STOP = "node_stop"


class Event(Payload):
    """Something that happened at a door. ``seq`` is per node and never goes back."""

    v: Literal[1] = 1
    event_id: EventId
    node_id: Ident
    facility_id: Ident
    door_id: Ident
    seq: int = Field(ge=1, le=MAX_SEQ)
    ts: datetime
    kind: EventKind
    # For entry, exit and manual events: which way the person went.
    direction: Literal["entry", "exit"] | None = None
    subject: SubjectHex | None = None
    signal: Answer | None = None  # the answer the door showed
    admit: bool | None = None
    reason: EventText | None = None  # a code, e.g. "expired", "anti_passback"
    message: EventText | None = None  # what a guard reads
    detail: EventText | None = None
    late: bool = False  # sent again from the journal after a failed or unacked attempt

    @field_serializer("ts")
    def _ts(self, ts: datetime) -> str:
        return wire_time(ts)

    @model_validator(mode="after")
    def _consistent(self) -> Event:
        """An entry or exit is a passage someone was let through, the way its kind says."""
        if self.kind in (EventKind.ENTRY, EventKind.EXIT):
            if self.direction is not None and self.direction != self.kind.value:
                raise ValueError(f"an {self.kind.value} cannot go the way {self.direction}")
            if self.admit is False:
                raise ValueError(f"an {self.kind.value} is a passage: admit cannot be false")
        elif self.kind is EventKind.DENIED and self.admit is True:
            raise ValueError("a denied event cannot admit")
        return self


class NodeState(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"  # running, but something is wrong (camera, lists, self-test)
    OFFLINE = "offline"


class NodeStatus(Payload):
    """Retained on the node's status topic; ``offline`` is also the node's Last Will."""

    v: Literal[1] = 1
    state: NodeState
    ts: datetime | None = None
    problems: list[ShortText] = Field(default_factory=list, max_length=20)
    trust_list_age_s: float | None = None
    status_list_age_s: float | None = None
    direction: Literal["entry", "exit", "both"] | None = None


class Ack(Payload):
    """The hub's word that these events are stored; only then may the node forget them."""

    v: Literal[1] = 1
    event_ids: list[EventId] = Field(max_length=10_000)


class CommandName(StrEnum):
    OPEN = "open"  # release the gate once (manual check-in, guard's remote open)
    LOCKDOWN = "lockdown"  # args: {"on": bool}
    RELOAD_LISTS = "reload_lists"
    SET_POLICY = "set_policy"  # args: policy fields
    PING = "ping"


class Command(Payload):
    """A request to one node; the reply echoes ``id``. ``cmd`` is free text on purpose:
    an unknown command must reach the node and be answered with an error, not dropped."""

    v: Literal[1] = 1
    id: Annotated[str, Field(min_length=1, max_length=64)]
    cmd: Annotated[str, Field(min_length=1, max_length=64)]
    args: dict[str, Any] = Field(default_factory=dict)


class CommandReply(Payload):
    v: Literal[1] = 1
    id: str
    ok: bool
    error: ShortText | None = None
    result: dict[str, Any] | None = None


class FacilityState(Payload):
    """Retained by the hub: what entry nodes need to refuse entry when the building is full."""

    v: Literal[1] = 1
    facility_id: Ident
    occupancy: int = Field(ge=0)
    capacity: int | None = Field(default=None, ge=0)
    full: bool = False
    ts: datetime | None = None


# Passages in one message at most: 200 of about 190 bytes each keep it near 40 KB.
PASSAGES_PER_MESSAGE = 200


class Passage(Payload):
    """That a subject passed one door of the facility (an item of :class:`Passages`)."""

    node_id: Ident
    door_id: Ident
    subject: SubjectHex
    direction: Literal["entry", "exit"]
    ts: datetime
    event_id: EventId

    @field_serializer("ts")
    def _ts(self, ts: datetime) -> str:
        return wire_time(ts)


class Passages(Payload):
    """The hub's word to a facility's doors that subjects passed its doors.

    One message for the entries and exits with a subject that one stored batch holds (in
    chunks of at most ``PASSAGES_PER_MESSAGE``), so an entrance refuses a pass that was
    just used at another entrance (facility-wide anti-passback). Not retained: a door that
    was away keeps deciding on what it saw itself.
    """

    v: Literal[1] = 1
    facility_id: Ident
    passages: list[Passage] = Field(min_length=1, max_length=PASSAGES_PER_MESSAGE)


def encode_passages(facility_id: str, passages: list[dict[str, str]]) -> bytes:
    """The bytes of a ``Passages`` message for passages already known valid (the hub makes
    them from events it validated and stored), without building a model for each: the
    hub sends one for every stored batch. Each item has ``Passage``'s fields, ``ts`` as
    ``wire_time`` writes it. ``Passages.parse`` reads it as it reads ``Passages.dumps()``.
    """
    if not 1 <= len(passages) <= PASSAGES_PER_MESSAGE:
        raise ValueError(f"a Passages message holds 1 to {PASSAGES_PER_MESSAGE} passages")
    message = {"v": 1, "facility_id": facility_id, "passages": passages}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
