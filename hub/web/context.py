"""What the web side's handlers share: the running hub and the web services around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection, Request

from hub.auth import Accounts, Staff
from hub.config import HubConfig
from hub.service import Hub

if TYPE_CHECKING:
    from hub.web.desk import Desk
    from hub.web.stream import Streams


@dataclass
class WebContext:
    hub: Hub
    accounts: Accounts
    desk: Desk
    streams: Streams
    metrics_token: str | None  # None: /metrics is open

    @property
    def config(self) -> HubConfig:
        return self.hub.config


def context_of(conn: HTTPConnection) -> WebContext:
    ctx: WebContext = conn.app.state.ctx
    return ctx


@dataclass
class Call:
    """One API request past its gate: who asks, and the web services to answer with."""

    request: Request
    ctx: WebContext
    staff: Staff | None

    @property
    def hub(self) -> Hub:
        return self.ctx.hub

    @property
    def user(self) -> str:
        if self.staff is None:  # only on routes that need no login, which never ask
            raise RuntimeError("no user on this request")
        return self.staff.username
