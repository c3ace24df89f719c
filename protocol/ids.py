"""The shapes of Pintu's ids, written once: every part validates ids against these.

A facility, door, node or zone id becomes an MQTT topic level and a path segment, so it
holds no "/", "+", "#" or spaces and has a bounded length: a letter or digit, then up to
63 letters, digits, ".", "_" or "-". A subject id (a pass's pseudonymous holder) is 12
bytes in hex; an event id is 16 bytes (a UUID) in hex; an enrolment's lookup id (derived
from a provisioning QR's token) is 16 bytes in hex.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import Field

_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_SUBJECT = r"[0-9a-f]{24}"
_HEX16 = r"[0-9a-f]{32}"

# For pydantic fields and JSON schemas: pydantic's regex engine reads "$" as the end of
# the text.
ID_PATTERN: Final = rf"^{_ID}$"
SUBJECT_PATTERN: Final = rf"^{_SUBJECT}$"
EVENT_ID_PATTERN: Final = rf"^{_HEX16}$"
LOOKUP_ID_PATTERN: Final = rf"^{_HEX16}$"

# For Python's re, with "\Z": its "$" also matches before a final newline, which would let
# "door-1\n" pass for an id.
ID_RE: Final = re.compile(rf"{_ID}\Z")
SUBJECT_RE: Final = re.compile(rf"{_SUBJECT}\Z")
EVENT_ID_RE: Final = re.compile(rf"{_HEX16}\Z")
LOOKUP_ID_RE: Final = re.compile(rf"{_HEX16}\Z")

# As pydantic field types.
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
SubjectHex = Annotated[str, Field(pattern=SUBJECT_PATTERN)]
EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]


def is_id(text: str) -> bool:
    """Whether ``text`` is a valid facility, door, node or zone id."""
    return ID_RE.match(text) is not None


def is_subject(text: str) -> bool:
    """Whether ``text`` is a subject id (24 lowercase hex digits)."""
    return SUBJECT_RE.match(text) is not None
