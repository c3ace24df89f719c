"""The registry's operations, shared by the HTTP API and the CLI.

``Registry`` holds the store, the subject key and the signing keys, and does each thing an
operator, a PIC or a hub may ask for: it validates, checks the caller's right to the
object, changes the store in one step and writes the audit trail. Who may call what at all
(roles) is the API's business; *which* facility a PIC or a hub may touch is checked here.
"""

from __future__ import annotations

import hmac
import io
import logging
import math
import re
import secrets
import struct
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import segno

from protocol import passes
from protocol.passes import SUBJECT_BYTES
from protocol.signedlist import Kind
from protocol.status import Status
from protocol.statuslist import RECORD_BYTES, StatusList
from protocol.trust import format_time
from registry import auth, poster
from registry.auth import Principal, login_throttle
from registry.config import RegistryConfig
from registry.doorlists import DoorLists, Prepared
from registry.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    LoginThrottled,
    NotFound,
    SigningKeyError,
    StoreError,
    Unauthenticated,
)
from registry.importer import ImportReport, import_csv
from registry.keyring import Keyring, Rotation, TrustDocument
from registry.listkeys import ListKeyring, ListKeyRotation
from registry.models import DoorIn, FacilityRequestIn, VisitIn
from registry.readlimit import ReadLimiter
from registry.records import (
    Account,
    Door,
    Facility,
    FacilityState,
    HubActivity,
    Outcome,
    Person,
    PersonRow,
    StatusChange,
    Token,
    Visit,
    VisitIntake,
)
from registry.store import RegistryStore, open_store
from registry.subjects import SubjectKey, normalise_name, same_name, validate_nik
from registry.tracing import Trace, trace
from runtime.throttle import LoginThrottle

logger = logging.getLogger(__name__)

DAY_S = 86_400
# A wallet asks when it opens, comes back online or every few minutes; many phones share
# one address behind a carrier's NAT.
WALLET_CALLS_PER_MINUTE = 12
# An answered phone check-in is kept this long for a phone that asks again, then deleted.
CHECKIN_ANSWER_KEPT_S = 600
WALLET_CALLS_PER_ADDRESS = 600
# A hub's reads and pushes are noted at most this often (per facility, kind and process).
HUB_NOTE_S = 60
# Hub clocks drift like door clocks: a visit may end this far "in the future".
CLOCK_SKEW_S = 300
_RECORD = struct.Struct(f">{SUBJECT_BYTES}sBI")
assert _RECORD.size == RECORD_BYTES  # noqa: S101 - the .psl record layout of docs/protocol.md


@dataclass(frozen=True)
class IssuedPass:
    text: str
    person: Person
    kid: str
    issued_at: int
    expires_at: int

    def qr_png(self, scale: int = 6) -> bytes:
        buffer = io.BytesIO()
        segno.make(self.text, error="m", micro=False).save(buffer, kind="png", scale=scale)
        return buffer.getvalue()


@dataclass(frozen=True)
class Feed:
    changes: list[StatusChange]
    next: int
    more: bool


@dataclass(frozen=True)
class Snapshot:
    body: bytes
    cursor: int
    count: int


@dataclass(frozen=True)
class Session:
    token: str
    principal: Principal
    expires_at: int


@dataclass(frozen=True)
class Verification:
    facility: Facility
    token: str
    expires_at: int


@dataclass(frozen=True)
class Activation:
    facility: Facility
    username: str
    hub_token: str


@dataclass(frozen=True)
class HubState:
    """What the registry knows of a facility's hub: its token, the visits it pushed, and
    when it last read the lists, pushed, or was refused."""

    facility: Facility
    token_issued_at: int | None
    visits: int
    last_visit_at: int | None
    activity: HubActivity


@dataclass(frozen=True)
class Purge:
    visits: int
    tokens: int
    before: int


def slug(text: str, limit: int = 40) -> str:
    """A readable id part from a name: ASCII letters and digits joined by dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    out = "-".join(words)[:limit].strip("-")
    return out or "facility"


def _time(value: datetime, up: bool) -> int:
    seconds = value.timestamp()
    return math.ceil(seconds) if up else math.floor(seconds)


# Audit actions that name the subject read; kept as long as the tracing window.
PERSONAL_READS = ("person.read", "person.lookup", "tracing.query")


@dataclass(frozen=True)
class Reader:
    """Who reads personal data, from where, and why (for the limit and the audit log)."""

    actor: Principal
    address: str
    why: str = ""


class Registry:
    """The central registry, over a store, a subject key and a keys directory."""

    def __init__(
        self,
        config: RegistryConfig,
        store: RegistryStore,
        subject_key: SubjectKey,
        keyring: Keyring,
        *,
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.subject_key = subject_key
        self.keyring = keyring
        self.clock = clock
        self.throttle = throttle or login_throttle()
        self.reads = ReadLimiter(
            config.web.personal_reads_per_minute,
            config.web.personal_reads_per_address_per_minute,
        )
        # Wallet refreshes and activations: per credential (or link) and per address.
        self.wallet_calls = ReadLimiter(WALLET_CALLS_PER_MINUTE, WALLET_CALLS_PER_ADDRESS)
        self._snapshot: Snapshot | None = None
        self._hub_noted: dict[tuple[str, str], int] = {}
        self.list_keys = ListKeyring(keyring.keys_dir)
        self.door_lists = DoorLists(
            keyring, self.list_keys, store, config.pass_valid_days * DAY_S, self.now
        )
        self._snapshot_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        config: RegistryConfig,
        *,
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
        make_key: bool = True,
    ) -> Registry:
        """Open the store, read (or create) the subject key and, if asked, a first key."""
        subject_key = SubjectKey.load_or_create(config.subject_key_file)
        keyring = Keyring(config.keys_dir)
        if make_key:
            keyring.ensure_key(int(clock()))
            ListKeyring(config.keys_dir).ensure_key(int(clock()))
        store = open_store(config.store)
        return cls(config, store, subject_key, keyring, clock=clock, throttle=throttle)

    def close(self) -> None:
        self.store.close()

    def now(self) -> int:
        return int(self.clock())

    def _audit(self, actor: Principal | str, action: str, target: str, detail: str = "") -> None:
        name = actor.actor if isinstance(actor, Principal) else actor
        self.store.audit(self.now(), name, action, target, detail)

    # Persons and statuses.

    def subject_of(self, nik: str) -> str:
        return self.subject_key.subject_hex(validate_nik(nik))

    def set_person(
        self,
        nik: str,
        name: str,
        status: Status,
        doses: int,
        actor: Principal | str,
        why: str = "",
    ) -> tuple[Person, Outcome]:
        """Add a person or change their status; ``why`` (the operator's reason) goes into
        the audit trail with the change."""
        subject = self.subject_of(nik)
        row = PersonRow(subject, normalise_name(name), status, doses)
        (outcome,) = self.store.apply_persons([row], self.now())
        person = self.store.get_person(subject)
        assert person is not None  # noqa: S101 - just written
        if outcome is not Outcome.UNCHANGED:
            detail = f"{status.label} {doses}" + (f"; why: {why}" if why else "")
            self._audit(actor, f"person.{outcome.value}", subject, detail)
        return person, outcome

    def _personal_read(self, reader: Reader | None) -> None:
        """Spend one of the reader's personal-data reads (``ReadThrottled`` past the limit)."""
        if reader is not None:
            self.reads.take(reader.actor.actor, reader.address)

    def _audit_read(self, reader: Reader | None, action: str, target: str, outcome: str) -> None:
        if reader is not None:
            why = reader.why or "unstated"
            self._audit(
                reader.actor, action, target, f"{outcome}; from {reader.address}; why: {why}"
            )

    def person(self, subject: str, reader: Reader | None = None) -> Person:
        """The person behind a subject id; a ``reader``'s read is limited and audited."""
        self._personal_read(reader)
        person = self.store.get_person(subject)
        self._audit_read(reader, "person.read", subject, "found" if person else "not found")
        if person is None:
            raise NotFound(f"no person with subject id {subject}")
        return person

    def lookup(self, nik: str, name: str, reader: Reader | None = None) -> Person | None:
        """The person with this NIK *and* name; one answer (None) for both kinds of miss."""
        self._personal_read(reader)
        subject = self.subject_of(nik)
        person = self.store.get_person(subject)
        found = person is not None and same_name(person.name, name)
        # The audit names the subject id, never the NIK or the name that was asked.
        self._audit_read(reader, "person.lookup", subject, "found" if found else "not found")
        return person if found else None

    def import_csv(
        self,
        lines: Iterable[str],
        actor: Principal | str,
        progress: Callable[[ImportReport], None] | None = None,
    ) -> ImportReport:
        report = import_csv(
            lines,
            lambda nik: self.subject_key.subject_hex(nik),
            lambda rows: self.store.apply_persons(rows, self.now()),
            progress,
        )
        self._audit(
            actor,
            "persons.import",
            "csv",
            f"rows={report.rows} created={report.created} updated={report.updated} "
            f"renamed={report.renamed} rejected={report.rejected}",
        )
        logger.info(
            "import: %d rows, %d applied, %d rejected", report.rows, report.applied, report.rejected
        )
        return report

    def feed(self, since: int, limit: int) -> Feed:
        changes = self.store.changes_since(since, limit + 1)
        more = len(changes) > limit
        changes = changes[:limit]
        return Feed(changes, changes[-1].cursor if changes else since, more)

    def snapshot(self) -> Snapshot:
        """Every person's status as a ``.psl`` status list, and the feed cursor it matches."""
        with self._snapshot_lock:
            cursor = self.store.last_cursor()
            if self._snapshot is not None and self._snapshot.cursor == cursor:
                return self._snapshot
            cursor, rows = self.store.status_snapshot()
            # Subjects are fixed-width lower-case hex, so the store's text order is the
            # byte order the status list's binary search needs.
            pack = _RECORD.pack
            records = b"".join(
                pack(bytes.fromhex(subject), Status[status.upper()], changed_at)
                for subject, status, changed_at in rows
            )
            status_list = StatusList(records, updated_at=self.now())
            self._snapshot = Snapshot(status_list.dumps(), cursor, len(status_list))
            return self._snapshot

    # Passes and keys.

    def issue_pass(self, nik: str, actor: Principal | str) -> IssuedPass:
        subject = self.subject_of(nik)
        person = self.store.get_person(subject)
        if person is None:
            raise NotFound("no person with this NIK; add them (or import them) first")
        return self.sign_pass(person, actor)

    def sign_pass(
        self, person: Person, actor: Principal | str, action: str = "pass.issued"
    ) -> IssuedPass:
        """A new pass of ``person``'s current status, signed with the current key."""
        subject = person.subject
        key = self.keyring.current()
        issued_at = self.now()
        expires_at = issued_at + self.config.pass_valid_days * DAY_S
        text = passes.issue(
            key, bytes.fromhex(subject), person.status, person.doses, issued_at, expires_at
        )
        # A pass the doors would refuse (a key retired a moment ago by another process)
        # must never be handed out.
        verdict = passes.verify(text, self.keyring.trust_list(), now=issued_at)
        if not verdict.ok:
            raise SigningKeyError(f"a new pass does not verify: {verdict.reason.value}")
        self._audit(actor, action, subject, f"kid={key.kid_hex}")
        return IssuedPass(text, person, key.kid_hex, issued_at, expires_at)

    def trust_document(self) -> TrustDocument:
        return self.keyring.document()

    def rotate_key(self, actor: Principal | str) -> Rotation:
        rotation = self.keyring.rotate(self.now())
        self._audit(actor, "key.rotated", rotation.new_kid, " ".join(rotation.retired))
        return rotation

    def revoke_key(self, kid: str, actor: Principal | str) -> Rotation | None:
        rotation = self.keyring.revoke(kid, self.now())
        self._audit(actor, "key.revoked", kid.lower(), rotation.new_kid if rotation else "")
        return rotation

    # The doors' lists, signed with the list key.

    def door_list(self, kind: Kind) -> Prepared:
        """A door list (the list-key chain, the trust list or the status list) to sign."""
        return self.door_lists.prepare(kind)

    def rotate_list_key(self, actor: Principal | str) -> ListKeyRotation:
        """A new list key, announced to the doors in a statement the current one signs."""
        rotation = self.list_keys.rotate(self.now())
        self._audit(
            actor,
            "list_key.rotated",
            rotation.new_kid,
            f"seq={rotation.seq} " + " ".join(rotation.old_kids),
        )
        return rotation

    # Accounts and authentication.

    def add_operator(self, username: str, password: str, *, update: bool = False) -> str:
        """Add an operator (or, with ``update``, set their password); what was done."""
        if not username or len(username) > 100 or username != username.strip():
            raise InvalidInput("a user name has 1 to 100 characters, no spaces at either end")
        try:
            auth.check_password(password)
        except ValueError as err:
            raise InvalidInput(str(err)) from err
        password_hash = auth.hash_password(password)
        try:
            self.store.add_account(Account(username, password_hash, "operator", self.now()))
            action = "added"
        except AlreadyExists:
            existing = self.store.get_account(username)
            if not update or existing is None or existing.role != "operator":
                raise
            self.store.set_password(username, password_hash)
            action = "updated"
        self._audit(f"cli:{username}", f"operator.{action}", username)
        return action

    def login(self, username: str, password: str, address: str | None = None) -> Session:
        """A session for a right password; ``Unauthenticated`` or ``LoginThrottled``.

        Wrong passwords are counted per user name and, with ``address``, per address and
        per (name, address) (see ``login_throttle``).
        """
        wait = self.throttle.retry_after(username, address)
        if wait > 0:
            raise LoginThrottled(wait)
        account = self.store.get_account(username)
        if not auth.verify_password(account.password_hash if account else None, password):
            self.throttle.failed(username, address)
            logger.info("failed login for %r from %s", username, address or "?")
            raise Unauthenticated("wrong user name or password")
        assert account is not None  # noqa: S101 - verify_password fails without one
        self.throttle.succeeded(username, address)
        if auth.needs_rehash(account.password_hash):
            self.store.set_password(username, auth.hash_password(password))
        token = auth.new_token(auth.SESSION_PREFIX)
        now = self.now()
        expires_at = now + int(self.config.web.session_hours * 3600)
        token_hash = auth.token_hash(token)
        self.store.add_token(Token(token_hash, "session", username, None, now, expires_at))
        principal = Principal(account.role, username, None, token_hash)
        return Session(token, principal, expires_at)

    def logout(self, principal: Principal) -> None:
        if principal.token_hash is not None:
            self.store.delete_token(principal.token_hash)

    def authenticate(self, token: str) -> Principal:
        token_hash = auth.token_hash(token)
        record = self.store.get_token(token_hash)
        if record is None or (record.expires_at is not None and record.expires_at <= self.now()):
            raise Unauthenticated("unknown or expired token; log in again")
        if record.kind == "hub":
            assert record.facility_id is not None  # noqa: S101 - hub tokens name one
            return Principal("hub", record.facility_id, record.facility_id, token_hash)
        account = self.store.get_account(record.username or "")
        if account is None:
            raise Unauthenticated("the account of this token no longer exists")
        return Principal(account.role, account.username, None, token_hash)

    def facilities_of(self, principal: Principal) -> list[str]:
        if principal.kind == "hub" and principal.facility_id:
            return [principal.facility_id]
        if principal.kind == "pic":
            return [f.id for f in self.store.list_facilities(pic_email=principal.name)]
        return []

    # Facilities.

    def facility(self, principal: Principal, facility_id: str) -> Facility:
        """The facility, if this caller may see it: operators any, PICs and hubs their own."""
        facility = self.store.get_facility(facility_id)
        if principal.kind == "operator":
            if facility is None:
                raise NotFound(f"no facility {facility_id!r}")
            return facility
        own = facility is not None and (
            (principal.kind == "pic" and facility.pic_email == principal.name)
            or (principal.kind == "hub" and facility.id == principal.facility_id)
        )
        if not own or facility is None:
            raise Forbidden(f"facility {facility_id!r} is not yours")
        return facility

    def request_facility(self, request: FacilityRequestIn) -> Facility:
        now = self.now()
        facility = Facility(
            id=f"{slug(request.name)}-{secrets.token_hex(3)}",
            name=" ".join(request.name.split()),
            address=" ".join(request.address.split()),
            type=request.type,
            capacity=request.capacity,
            pic_name=" ".join(request.pic_name.split()),
            pic_email=request.pic_email.strip().lower(),
            state=FacilityState.REQUESTED,
            created_at=now,
            updated_at=now,
        )
        self.store.add_facility(facility)
        self._audit("public", "facility.requested", facility.id, facility.pic_email)
        logger.info("facility %s requested by %s", facility.id, facility.pic_email)
        return facility

    def verify_facility(self, facility_id: str, actor: Principal | str) -> Verification:
        token = auth.new_token(auth.ACTIVATION_PREFIX)
        expires_at = self.now() + int(self.config.activation_token_hours * 3600)
        try:
            facility = self.store.transition(
                facility_id,
                (FacilityState.REQUESTED, FacilityState.VERIFIED),
                FacilityState.VERIFIED,
                self.now(),
                activation_hash=auth.token_hash(token),
                activation_expires_at=expires_at,
            )
        except Conflict as err:
            raise Conflict(
                f"{err}: only a requested facility can be verified (verifying again issues "
                "a new activation token)",
                err.state,
            ) from err
        self._audit(actor, "facility.verified", facility_id)
        return Verification(facility, token, expires_at)

    def reject_facility(self, facility_id: str, reason: str, actor: Principal | str) -> Facility:
        reason = " ".join(reason.split())
        if not reason:
            raise InvalidInput("a rejection needs a reason")
        try:
            facility = self.store.transition(
                facility_id,
                (FacilityState.REQUESTED, FacilityState.VERIFIED),
                FacilityState.REJECTED,
                self.now(),
                reason=reason,
            )
        except Conflict as err:
            raise Conflict(
                f"{err}: only a requested or verified facility can be rejected", err.state
            ) from err
        self._audit(actor, "facility.rejected", facility_id, reason)
        return facility

    def activate_facility(self, facility_id: str, token: str, password: str) -> Activation:
        facility = self.store.get_facility(facility_id)
        if facility is None:
            raise NotFound(f"no facility {facility_id!r}")
        if facility.state is not FacilityState.VERIFIED:
            hint = {
                FacilityState.REQUESTED: "an operator has to verify it first",
                FacilityState.ACTIVE: "its activation token was used; the PIC logs in instead",
                FacilityState.REJECTED: f"it was rejected: {facility.reason}",
            }[facility.state]
            raise Conflict(
                f"facility {facility_id!r} is {facility.state.value}: {hint}",
                facility.state.value,
            )
        expected = facility.activation_hash or ""
        if not hmac.compare_digest(expected, auth.token_hash(token)):
            raise Forbidden("this is not the facility's current activation token")
        if facility.activation_expires_at is None or self.now() >= facility.activation_expires_at:
            raise Gone(
                f"the activation token expired at {format_time(facility.activation_expires_at)}; "
                "ask an operator to verify the facility again for a new one"
            )
        account = self.store.get_account(facility.pic_email)
        if account is None:
            try:
                auth.check_password(password)
            except ValueError as err:
                raise InvalidInput(f"password: {err}") from err
            self.store.add_account(
                Account(facility.pic_email, auth.hash_password(password), "pic", self.now())
            )
        elif account.role != "pic":
            raise Conflict(
                f"{facility.pic_email!r} is an operator's account and cannot be a PIC's",
                facility.state.value,
            )
        elif not auth.verify_password(account.password_hash, password):
            raise Conflict(
                f"an account {facility.pic_email!r} exists: activate with its password",
                facility.state.value,
            )
        facility = self.store.transition(
            facility_id, (FacilityState.VERIFIED,), FacilityState.ACTIVE, self.now()
        )
        hub_token = self._new_hub_token(facility_id)
        self._audit(f"pic:{facility.pic_email}", "facility.activated", facility_id)
        logger.info("facility %s is active", facility_id)
        return Activation(facility, facility.pic_email, hub_token)

    def _new_hub_token(self, facility_id: str) -> str:
        token = auth.new_token(auth.HUB_PREFIX)
        self.store.replace_hub_token(
            Token(auth.token_hash(token), "hub", None, facility_id, self.now(), None)
        )
        return token

    def issue_hub_token(self, principal: Principal | str, facility_id: str) -> tuple[str, int]:
        """A new hub token for an active facility; the older ones stop working."""
        if isinstance(principal, Principal):
            facility = self.facility(principal, facility_id)
        else:
            found = self.store.get_facility(facility_id)
            if found is None:
                raise NotFound(f"no facility {facility_id!r}")
            facility = found
        self._require_active(facility, "a hub token")
        token = auth.new_token(auth.HUB_PREFIX)
        replaced = self.store.replace_hub_token(
            Token(auth.token_hash(token), "hub", None, facility_id, self.now(), None)
        )
        self._audit(principal, "facility.hub_token", facility_id, f"replaced={replaced}")
        return token, replaced

    @staticmethod
    def _require_active(facility: Facility, what: str) -> None:
        if facility.state is not FacilityState.ACTIVE:
            raise Conflict(
                f"facility {facility.id!r} is {facility.state.value}: {what} needs it active",
                facility.state.value,
            )

    def add_door(self, principal: Principal, facility_id: str, door: DoorIn) -> Door:
        facility = self.facility(principal, facility_id)
        self._require_active(facility, "adding doors")
        record = Door(
            facility_id,
            door.door_id,
            " ".join(door.name.split()),
            door.direction,
            self.now(),
            door.kind,
        )
        self.store.add_door(record)
        target = f"{facility_id}/{door.door_id}"
        self._audit(principal, "door.added", target, f"{door.direction} {door.kind}")
        return record

    def rename_door(self, principal: Principal, facility_id: str, door_id: str, name: str) -> Door:
        facility = self.facility(principal, facility_id)
        self._require_active(facility, "renaming doors")
        name = " ".join(name.split())
        if not name or len(name) > 100:
            raise InvalidInput("a door's name has 1 to 100 characters")
        door = self.store.rename_door(facility_id, door_id, name)
        self._audit(principal, "door.renamed", f"{facility_id}/{door_id}", name)
        return door

    def doors(self, principal: Principal, facility_id: str) -> list[Door]:
        self.facility(principal, facility_id)
        return self.store.list_doors(facility_id)

    def poster(
        self, principal: Principal, facility_id: str, door_id: str, kind: Literal["png", "pdf"]
    ) -> bytes:
        facility = self.facility(principal, facility_id)
        self._require_active(facility, "a poster")
        door = self.store.get_door(facility_id, door_id)
        if door is None:
            raise NotFound(f"facility {facility_id!r} has no door {door_id!r}")
        return poster.poster_bytes(facility, door, kind, self.config.base_url())

    def hub_state(self, principal: Principal, facility_id: str) -> HubState:
        """The facility's hub as the registry knows it (operators any, a PIC their own)."""
        facility = self.facility(principal, facility_id)
        visits, last = self.store.visits_received(facility_id).get(facility_id, (0, None))
        issued = self.store.hub_tokens_issued().get(facility_id)
        seen = self.store.hub_activity().get(facility_id, HubActivity(facility_id))
        return HubState(facility, issued, visits, last, seen)

    def hubs(self) -> list[HubState]:
        """Every active facility's hub, as the registry knows it (for operators)."""
        received = self.store.visits_received()
        issued = self.store.hub_tokens_issued()
        seen = self.store.hub_activity()
        found = []
        for f in self.store.list_facilities(FacilityState.ACTIVE):
            visits, last = received.get(f.id, (0, None))
            activity = seen.get(f.id, HubActivity(f.id))
            found.append(HubState(f, issued.get(f.id), visits, last, activity))
        return found

    def note_hub(self, principal: Principal, kind: str, reason: str | None = None) -> None:
        """Remember that a hub read a list (``statuses``, ``trust``) or pushed ``visits``
        (at most once a minute a kind, so a sync's pages cost no write each), or that a
        push of it was ``refused`` (each time, with the reason)."""
        facility_id = principal.facility_id
        if principal.kind != "hub" or facility_id is None:
            return
        now = self.now()
        key = (facility_id, kind)
        if kind != "refused" and now - self._hub_noted.get(key, -HUB_NOTE_S) < HUB_NOTE_S:
            return
        try:
            self.store.note_hub(facility_id, kind, now, reason[:500] if reason else None)
        except StoreError as err:
            # A sighting is worth less than the call it came with: that call goes on.
            logger.warning("could not note hub %s's %s: %s", facility_id, kind, err)
            return
        self._hub_noted[key] = now

    # Visits, tracing and retention.

    def receive_visits(self, principal: Principal, rows: Sequence[VisitIn]) -> VisitIntake:
        """Store a hub's batch: all of it, or (on any bad row) none of it."""
        try:
            intake = self._receive_visits(principal, rows)
        except (Forbidden, InvalidInput, Conflict) as err:
            self.note_hub(principal, "refused", str(err))
            raise
        self.note_hub(principal, "visits")
        return intake

    def _receive_visits(self, principal: Principal, rows: Sequence[VisitIn]) -> VisitIntake:
        facility_id = principal.facility_id
        if principal.kind != "hub" or facility_id is None:
            raise Forbidden("only a facility's hub pushes visits")
        foreign = [
            f"visits[{i}].facility_id: {row.facility_id!r}"
            for i, row in enumerate(rows)
            if row.facility_id != facility_id
        ]
        if foreign:
            raise Forbidden(
                f"this hub's token is for facility {facility_id!r}, not for "
                f"{foreign[0]}{f' (and {len(foreign) - 1} more rows)' if len(foreign) > 1 else ''}"
                "; nothing of this batch was stored"
            )
        doors = {d.door_id for d in self.store.list_doors(facility_id)}
        limit = int(self.config.max_visit_hours * 3600)
        latest = self.now() + CLOCK_SKEW_S
        problems: list[dict[str, object]] = []
        seen: dict[str, int] = {}
        visits = []
        for i, row in enumerate(rows):
            check_in, check_out = _time(row.check_in, up=False), _time(row.check_out, up=True)

            def bad(field: str, message: str, i: int = i) -> None:
                problems.append({"field": f"visits[{i}].{field}", "message": message})

            if row.door_id not in doors:
                bad(
                    "door_id", f"no door {row.door_id!r} is registered for facility {facility_id!r}"
                )
            if check_out < check_in:
                bad("check_out", "is before check_in")
            elif check_out - check_in > limit:
                bad("check_out", f"the visit lasts longer than {self.config.max_visit_hours:g} h")
            if check_out > latest:
                bad("check_out", "is in the future")
            if row.visit_id in seen:
                bad("visit_id", f"repeats visits[{seen[row.visit_id]}].visit_id")
            seen.setdefault(row.visit_id, i)
            visits.append(
                Visit(facility_id, row.visit_id, row.subject, row.door_id, check_in, check_out)
            )
        if problems:
            first = problems[0]
            raise InvalidInput(
                f"{first['field']}: {first['message']}"
                + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
                + "; nothing of this batch was stored",
                problems,
            )
        intake = self.store.add_visits(facility_id, visits, self.now())
        logger.info(
            "facility %s: %d visits stored, %d already known",
            facility_id,
            intake.stored,
            intake.duplicates,
        )
        return intake

    def trace(
        self,
        subject: str,
        start: int | None = None,
        end: int | None = None,
        reader: Reader | None = None,
    ) -> Trace:
        now = self.now()
        end = now if end is None else end
        start = now - self.config.tracing_window_days * DAY_S if start is None else start
        if start >= end:
            raise InvalidInput("'from' must be before 'to'")
        self._personal_read(reader)
        result = trace(self.store, subject, start, end)
        self._audit_read(
            reader,
            "tracing.query",
            subject,
            f"{format_time(start)} to {format_time(end)}, {len(result.facilities)} facilities, "
            f"{len(result.contacts)} contacts",
        )
        return result

    def purge(self) -> Purge:
        now = self.now()
        before = now - self.config.tracing_window_days * DAY_S
        visits = self.store.purge_visits(before)
        tokens = self.store.purge_tokens(now)
        tokens += self.store.purge_wallet_links(now - DAY_S)
        # Phone check-ins: answered ones a little after, ones no hub took with the window.
        self.store.purge_checkins(now - CHECKIN_ANSWER_KEPT_S, before * 1000)
        # Who read whom stays in the audit trail; which subject, only as long as the visits.
        scrubbed = self.store.scrub_audit(before, PERSONAL_READS)
        if scrubbed:
            logger.info("blanked the subject of %d audit rows of personal reads", scrubbed)
        if visits or tokens:
            logger.info(
                "purged %d visits that ended before %s and %d tokens",
                visits,
                format_time(before),
                tokens,
            )
        return Purge(visits, tokens, before)
