"""The visitors' wallets: one-time activation links and the phones' wallet credentials."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, select

from registry.errors import Conflict
from registry.records import Wallet, WalletLink
from registry.schema import wallet_links, wallets
from registry.storage.database import Database

_GET_LINK = select(wallet_links).where(wallet_links.c.token_hash == bindparam("token_hash"))
# The link is spent in the statement that checks it: of two phones using it at once,
# exactly one changes the row (PostgreSQL re-checks the condition after the first commits).
_USE_LINK = (
    wallet_links.update()
    .where(
        wallet_links.c.token_hash == bindparam("key"),
        wallet_links.c.used_at.is_(None),
        wallet_links.c.expires_at > bindparam("now"),
    )
    .values(used_at=bindparam("used_at"))
)
_RETIRE = (
    wallets.update()
    .where(wallets.c.subject == bindparam("key"), wallets.c.retired_at.is_(None))
    .values(retired_at=bindparam("retired_at"))
)
_GET_WALLET = select(wallets).where(wallets.c.credential_hash == bindparam("credential_hash"))
_SET_PASS = (
    wallets.update()
    .where(wallets.c.credential_hash == bindparam("key"), wallets.c.retired_at.is_(None))
    .values(
        pass_text=bindparam("pass_text"),
        pass_status=bindparam("pass_status"),
        pass_doses=bindparam("pass_doses"),
        pass_kid=bindparam("pass_kid"),
        pass_issued_at=bindparam("pass_issued_at"),
        pass_expires_at=bindparam("pass_expires_at"),
    )
)
# Links are purged a day after they expire: till then a late visitor is told "expired".
_PURGE_LINKS = wallet_links.delete().where(wallet_links.c.expires_at <= bindparam("before"))


def _wallet_values(wallet: Wallet) -> dict[str, Any]:
    return {
        "credential_hash": wallet.credential_hash,
        "subject": wallet.subject,
        "created_at": wallet.created_at,
        "retired_at": wallet.retired_at,
        "pass_text": wallet.pass_text,
        "pass_status": wallet.pass_status,
        "pass_doses": wallet.pass_doses,
        "pass_kid": wallet.pass_kid,
        "pass_issued_at": wallet.pass_issued_at,
        "pass_expires_at": wallet.pass_expires_at,
    }


class Wallets:
    _db: Database

    def add_wallet_link(self, link: WalletLink) -> None:
        values = {
            "token_hash": link.token_hash,
            "subject": link.subject,
            "created_at": link.created_at,
            "expires_at": link.expires_at,
            "used_at": link.used_at,
        }
        self._db.write(
            "add a wallet link", lambda conn: conn.execute(wallet_links.insert(), values)
        )

    def get_wallet_link(self, token_hash: str) -> WalletLink | None:
        row = self._db.fetch_one(_GET_LINK, {"token_hash": token_hash})
        return None if row is None else WalletLink(*row)

    def use_wallet_link(self, token_hash: str, wallet: Wallet) -> int:
        at = wallet.created_at

        def work(conn: Connection) -> int:
            used = conn.execute(_USE_LINK, {"key": token_hash, "now": at, "used_at": at})
            if used.rowcount != 1:
                raise Conflict("the wallet link was used or has expired", "used")
            retired = conn.execute(_RETIRE, {"key": wallet.subject, "retired_at": at})
            conn.execute(wallets.insert(), _wallet_values(wallet))
            return int(retired.rowcount)

        return self._db.write("activate a wallet", work)

    def get_wallet(self, credential_hash: str) -> Wallet | None:
        row = self._db.fetch_one(_GET_WALLET, {"credential_hash": credential_hash})
        return None if row is None else Wallet(*row)

    def set_wallet_pass(self, wallet: Wallet) -> bool:
        values = {**_wallet_values(wallet), "key": wallet.credential_hash}

        def work(conn: Connection) -> bool:
            return bool(conn.execute(_SET_PASS, values).rowcount == 1)

        return self._db.write("keep a wallet's pass", work)

    def purge_wallet_links(self, before: int) -> int:
        return self._db.write(
            "purge wallet links",
            lambda conn: int(conn.execute(_PURGE_LINKS, {"before": before}).rowcount),
        )
