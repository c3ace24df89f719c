"""Accounts (operators and PICs) and their bearer tokens."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.exc import IntegrityError

from registry.errors import AlreadyExists, NotFound
from registry.records import Account, Token
from registry.schema import accounts, tokens
from registry.storage.database import Database

_GET_ACCOUNT = select(accounts).where(accounts.c.username == bindparam("username"))
_SET_PASSWORD = (
    accounts.update()
    .where(accounts.c.username == bindparam("key"))
    .values(password_hash=bindparam("password_hash"))
)
_GET_TOKEN = select(tokens).where(tokens.c.token_hash == bindparam("token_hash"))
_DELETE_TOKEN = tokens.delete().where(tokens.c.token_hash == bindparam("token_hash"))
_DELETE_HUB_TOKENS = tokens.delete().where(
    tokens.c.facility_id == bindparam("facility_id"), tokens.c.kind == "hub"
)
_HUB_TOKENS = (
    select(tokens.c.facility_id, func.max(tokens.c.created_at))
    .where(tokens.c.kind == "hub")
    .group_by(tokens.c.facility_id)
)
_PURGE_TOKENS = tokens.delete().where(
    tokens.c.expires_at.is_not(None), tokens.c.expires_at <= bindparam("now")
)


def _token_values(token: Token) -> dict[str, object]:
    return {
        "token_hash": token.token_hash,
        "kind": token.kind,
        "username": token.username,
        "facility_id": token.facility_id,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
    }


class Accounts:
    _db: Database

    def add_account(self, account: Account) -> None:
        values = {
            "username": account.username,
            "password_hash": account.password_hash,
            "role": account.role,
            "created_at": account.created_at,
        }

        def work(conn: Connection) -> None:
            try:
                conn.execute(accounts.insert(), values)
            except IntegrityError as err:
                raise AlreadyExists(f"an account named {account.username!r} exists") from err

        self._db.write("add an account", work)

    def set_password(self, username: str, password_hash: str) -> None:
        def work(conn: Connection) -> None:
            values = {"key": username, "password_hash": password_hash}
            if conn.execute(_SET_PASSWORD, values).rowcount == 0:
                raise NotFound(f"no account named {username!r}")

        self._db.write("set a password", work)

    def get_account(self, username: str) -> Account | None:
        row = self._db.fetch_one(_GET_ACCOUNT, {"username": username})
        return None if row is None else Account(row[0], row[1], row[2], row[3])

    def add_token(self, token: Token) -> None:
        self._db.write(
            "add a token", lambda conn: conn.execute(tokens.insert(), _token_values(token))
        )

    def get_token(self, token_hash: str) -> Token | None:
        row = self._db.fetch_one(_GET_TOKEN, {"token_hash": token_hash})
        return None if row is None else Token(*row)

    def delete_token(self, token_hash: str) -> None:
        self._db.write(
            "delete a token", lambda conn: conn.execute(_DELETE_TOKEN, {"token_hash": token_hash})
        )

    def replace_hub_token(self, token: Token) -> int:
        def work(conn: Connection) -> int:
            dropped = conn.execute(_DELETE_HUB_TOKENS, {"facility_id": token.facility_id})
            conn.execute(tokens.insert(), _token_values(token))
            return int(dropped.rowcount)

        return self._db.write("replace a hub token", work)

    def hub_tokens_issued(self) -> dict[str, int]:
        return {str(fid): int(at) for fid, at in self._db.fetch(_HUB_TOKENS)}

    def purge_tokens(self, now: int) -> int:
        return self._db.write(
            "purge tokens", lambda conn: int(conn.execute(_PURGE_TOKENS, {"now": now}).rowcount)
        )
