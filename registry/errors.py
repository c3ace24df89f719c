"""The root of every error the registry raises.

Each error also inherits the built-in it resembles where there is one, so a caller that
only knows Python's own exceptions (``ValueError`` for bad input, ``LookupError`` for an
unknown id, ``PermissionError`` for a refused caller) still catches it. The web layer maps
each class to one HTTP status; the CLI turns any of them into one clear line.
"""

from __future__ import annotations


class RegistryError(Exception):
    """A central registry failure."""


class ConfigError(RegistryError, ValueError):
    """A setting is missing or wrong, or a file it names cannot be read."""


class StoreError(RegistryError):
    """The store cannot be opened, migrated or written."""


class InvalidInput(RegistryError, ValueError):
    """A request or a row does not hold what it must (a bad NIK, a malformed visit...)."""

    def __init__(self, detail: str, problems: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []


class NotFound(RegistryError, LookupError):
    """No person, facility, door or key has the given id."""


class AlreadyExists(RegistryError, ValueError):
    """An account, door or other uniquely named thing with that name already exists."""


class Conflict(RegistryError):
    """The call does not fit the current state (a facility step out of order...)."""

    def __init__(self, detail: str, state: str | None = None) -> None:
        super().__init__(detail)
        self.state = state


class Gone(RegistryError):
    """A one-time credential has expired."""


class AuthError(RegistryError, PermissionError):
    """A caller is refused."""


class Unauthenticated(AuthError):
    """No credentials, or credentials the registry does not know (HTTP 401)."""


class Forbidden(AuthError):
    """Known credentials that do not allow this call (HTTP 403)."""


class LoginThrottled(AuthError):
    """Too many wrong passwords: try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class CheckinsWaiting(LoginThrottled):
    """A wallet has as many check-ins waiting for its facility's hub as it may have."""

    def __init__(self, waiting: int, retry_after_s: float = 60.0) -> None:
        super().__init__(retry_after_s)
        self.args = (f"{waiting} check-ins of this pass are still waiting for the facility; "
                     "show the screen to the staff",)  # fmt: skip


class SigningKeyError(RegistryError):
    """The signing keys cannot be read, written or used."""
