"""The API of phone check-ins: the wallet's side and the hub's channel (``registry.checkins``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Path, Query
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol.checkins import MAX_BATCH, AnswerBatch
from protocol.trust import format_time
from registry import auth, wallet
from registry.checkins import MAX_WAIT_S, Checkins, Started
from registry.models import CheckinResultOut, WalletCheckinIn
from registry.records import Checkin
from registry.routing import (
    HUB,
    PUBLIC,
    ApiError,
    CallDep,
    Routes,
    error_response,
    wallet_credential,
)
from registry.wallet import WalletMoved

routes = Routes()
_NO_STORE = {"Cache-Control": "no-store"}


def checkins_of(request: Request) -> Checkins:
    found: Checkins = request.app.state.checkins
    return found


CheckinsDep = Annotated[Checkins, Depends(checkins_of)]


def _result(
    checkins: Checkins, checkin: Checkin, started: Started | None, answer: dict[str, Any] | None
) -> dict[str, Any]:
    """The phone's answer: the hub's, or the registry's own while the hub cannot answer."""
    store = checkins.registry.store
    facility = started.facility if started else store.get_facility(checkin.facility_id)
    door = started.door if started else store.get_door(checkin.facility_id, checkin.door_id)
    out: dict[str, Any] = {
        "id": checkin.id,
        "facility_id": checkin.facility_id,
        "facility_name": facility.name if facility else checkin.facility_id,
        "door_id": checkin.door_id,
        "door_name": door.name if door else checkin.door_id,
        "at": format_time(checkin.at_ms // 1000),
    }
    if answer is not None:
        out.update(
            state="answered",
            signal=answer["signal"],
            admit=answer["admit"],
            direction=answer.get("direction"),
            reason=answer["reason"],
            occupancy=answer.get("occupancy"),
            capacity=answer.get("capacity"),
            decided_at=format_time(answer["at_ms"] // 1000),
        )
    else:
        assert started is not None  # noqa: S101 - a queued answer is made where it started
        own = checkins.provisional(started)
        out.update(
            state="queued",
            signal=own["signal"],
            admit=None,
            direction=own["direction"],
            reason=own["reason"],
            decided_at=None,
        )
    return CheckinResultOut.model_validate(out).model_dump(mode="json")


@routes.route(
    "POST",
    "/wallet/checkins",
    "walletCheckin",
    "Check in or out at a door by its poster, with the wallet's pass",
    auth=PUBLIC,
    tag="wallet",
    response=CheckinResultOut,
    errors=(401, 404, 409, 429, 503),
    description="Called by the wallet with 'Authorization: Bearer <wallet credential>' "
    "when its holder opens a door's poster address. The facility's hub decides, as a "
    "camera door would; the answer comes when it has decided (state 'answered'), or after "
    "phone_answer_s without it (state 'queued': the pass's own colour, to show to staff; "
    "the hub counts the check-in when it takes it). A retry with the same id is the same "
    "check-in. 409 with state 'camera_door' at a door that only has a camera.",
)
async def wallet_checkin(call: CallDep, checkins: CheckinsDep, body: WalletCheckinIn) -> Response:
    credential = wallet_credential(call)
    try:
        started = await asyncio.to_thread(
            checkins.start, credential, body.id, body.facility_id, body.door_id, call.address
        )
    except WalletMoved as err:
        return error_response(401, "wallet_moved", str(err), headers=_NO_STORE)
    checkin = started.checkin
    answer = None
    if checkin.answer is not None or await asyncio.to_thread(
        checkins.hub_listening, checkin.facility_id
    ):
        answer = await checkins.wait_answer(checkin, checkins.registry.config.phone_answer_s)
    if answer is None:
        await asyncio.to_thread(checkins.queued, checkin)
    result = await asyncio.to_thread(_result, checkins, checkin, started, answer)
    return JSONResponse(result, headers=_NO_STORE)


@routes.route(
    "GET",
    "/wallet/checkins/{checkin_id}",
    "walletCheckinResult",
    "The hub's answer to a queued check-in, once it came",
    auth=PUBLIC,
    tag="wallet",
    response=CheckinResultOut,
    errors=(401, 404, 503),
    description="For a check-in the wallet was answered for while the hub could not be "
    "reached: 200 with the hub's decision once it came, 202 while it has not. 404 for a "
    "check-in of another wallet, or one forgotten (its answer was read, or it is old).",
)
async def wallet_checkin_result(
    call: CallDep,
    checkins: CheckinsDep,
    checkin_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
) -> Response:
    credential = wallet_credential(call)
    held = await asyncio.to_thread(_current_wallet, checkins, credential, call.address)
    checkin, answer = await asyncio.to_thread(checkins.answer_of, checkin_id, held)
    if answer is None:
        return JSONResponse(
            {"id": checkin.id, "state": "queued"}, status_code=202, headers=_NO_STORE
        )
    result = await asyncio.to_thread(_result, checkins, checkin, None, answer)
    await asyncio.to_thread(checkins.registry.store.delete_checkin, checkin.id)
    return JSONResponse(result, headers=_NO_STORE)


def _current_wallet(checkins: Checkins, credential: str, address: str) -> str:
    """The hash of a current wallet's credential (the wallet's calls are counted)."""
    wallet.refresh(checkins.registry, credential, address)
    return auth.token_hash(credential)


async def answers_body(request: Request) -> AnswerBatch:
    """The hub's answers, parsed strictly from the body's JSON."""
    data = await request.body()
    try:
        return AnswerBatch.model_validate_json(data, strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, "invalid", f"{where}: {first['msg']}") from err


@routes.route(
    "GET",
    "/hub/checkins",
    "hubCheckins",
    "The hub's channel: phone check-ins at its facility's doors, when they come",
    auth=HUB,
    tag="hubs",
    errors=(400, 503),
    description="The hub keeps this request open (it needs only outbound connections): "
    "the answer comes as soon as a phone checks in at one of its facility's doors, or "
    f"after 'wait' seconds (at most {MAX_WAIT_S:.0f}) with none. Each check-in is leased "
    "to the hub for 15 s; one not answered by then is handed out again (the hub counts a "
    "check-in once by its id). Body: {v, checkins: [PhoneCheckin]} (docs/protocol.md).",
)
async def hub_checkins(
    request: Request,
    call: CallDep,
    checkins: CheckinsDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait")] = 25.0,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCH, description="At most this many")] = MAX_BATCH,
) -> Response:
    facility_id = call.caller.facility_id
    assert facility_id is not None  # noqa: S101 - a hub token speaks for one facility
    batch = await checkins.take(facility_id, wait, limit, gone=request.is_disconnected)
    return Response(batch.model_dump_json(), media_type="application/json", headers=_NO_STORE)


@routes.route(
    "POST",
    "/hub/checkins/answers",
    "hubCheckinAnswers",
    "The hub's decisions on phone check-ins",
    auth=HUB,
    tag="hubs",
    errors=(400, 422, 503),
    body={
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    description="Body: {v, answers: [PhoneAnswer]} (docs/protocol.md), parsed strictly. "
    "An answer to a check-in of another facility, or one answered already, changes "
    "nothing. Answer: {stored: how many were new}.",
)
async def hub_checkin_answers(
    call: CallDep, checkins: CheckinsDep, batch: Annotated[AnswerBatch, Depends(answers_body)]
) -> Response:
    facility_id = call.caller.facility_id
    assert facility_id is not None  # noqa: S101 - a hub token speaks for one facility
    done = await asyncio.to_thread(checkins.answer, facility_id, batch)
    checkins.wake(done)
    return JSONResponse({"stored": len(done)}, headers=_NO_STORE)
