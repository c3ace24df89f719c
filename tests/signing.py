"""What the tests do to signed documents."""

from __future__ import annotations


def flipped(sealed: bytes) -> bytes:
    """``sealed`` with one bit of its signature's last byte changed (always a change, which
    setting the byte to a value it may already hold is not)."""
    return sealed[:-1] + bytes([sealed[-1] ^ 0x01])
