"""Phone check-ins between the registry and a facility's hub (docs/protocol.md, section 8).

A visitor's phone opens a door's poster address at the registry; the registry passes the
check-in to the facility's hub over the channel the hub keeps open (the hub asks, the
registry answers when there is something), and the hub's decision goes back the same way.
Every field is checked strictly on both sides: no coercion, unknown fields refused.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import ConfigDict, Field

from protocol.ids import EventId, Ident
from protocol.model import StrictModel
from protocol.passes import MAX_TEXT_LENGTH
from protocol.signals import Answer

# The node id a facility's phone check-ins are counted under: a door's passages come from
# its nodes, a phone's from this one (no real node may take it).
PHONE_NODE: Final = "phone"
# At most this many check-ins, or answers, in one message of the channel.
MAX_BATCH: Final = 100
# A reason code, as the events carry them (docs/protocol.md): "ok", "status_black"...
ReasonCode = Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,39}$")]
UnixMs = Annotated[int, Field(ge=0, le=2**53)]


class _Strict(StrictModel):
    model_config = ConfigDict(strict=True)


class PhoneCheckin(_Strict):
    """A check-in from a phone, as the registry hands it to the hub."""

    v: Literal[1] = 1
    id: EventId = Field(description="The check-in's id, made by the phone; a retry keeps it")
    facility_id: Ident
    door_id: Ident
    door_direction: Literal["entry", "exit", "both"] = Field(
        description="Which way the door goes, as its facility registered it"
    )
    pass_text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH)]
    at_ms: UnixMs = Field(description="When the phone opened the door's address (Unix ms)")
    queued: bool = Field(
        False,
        description="The phone was answered without the hub (it could not be reached in "
        "time): the visitor was seen by staff, and the hub counts what happened then",
    )


class CheckinBatch(_Strict):
    """The registry's answer to the hub's ``GET /api/v1/hub/checkins``."""

    v: Literal[1] = 1
    checkins: list[PhoneCheckin] = Field(max_length=MAX_BATCH)


class PhoneAnswer(_Strict):
    """The hub's decision on one check-in: the door's decision, made by the hub."""

    v: Literal[1] = 1
    id: EventId
    signal: Answer
    admit: bool
    direction: Literal["entry", "exit"] | None = None
    reason: ReasonCode
    occupancy: int | None = Field(None, ge=0, le=10_000_000)
    capacity: int | None = Field(None, ge=0, le=10_000_000)
    full: bool = False
    at_ms: UnixMs = Field(description="When the hub decided (Unix ms)")


class AnswerBatch(_Strict):
    """The hub's ``POST /api/v1/hub/checkins/answers``."""

    v: Literal[1] = 1
    answers: list[PhoneAnswer] = Field(max_length=MAX_BATCH)
