"""Write tests/vectors/provisioning.json: provisioning QR format v1 test vectors.

Run once (``python tests/vectors/make_provisioning_vectors.py``) and commit the result.
Tokens and nonces are fixed, so every derived value and every sealed bundle is the same on
each run: a change to the format shows as a failing test. The tokens are test values only.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from protocol import enrolment
from protocol.enrolment import ProvisioningCode, SealedBundle

HERE = Path(__file__).parent


def token(seed: int) -> str:
    return base64.urlsafe_b64encode(bytes(range(seed, seed + 16))).rstrip(b"=").decode()


def valid(
    name: str, node_id: str, tok: str, hub_url: str, nonce: bytes, pin: str | None = None
) -> dict[str, Any]:
    code = ProvisioningCode(node_id=node_id, token=tok, hub_url=hub_url, pin=pin)
    bundle = SealedBundle(
        node_toml=f'node_id = "{node_id}"\n',
        mqtt_password="test-password-not-real",  # noqa: S106 - a test vector
        node_key_pem="-----BEGIN PRIVATE KEY-----\ntest\n-----END PRIVATE KEY-----\n",
    ).dumps()
    sealed = enrolment.seal(tok, node_id, bundle, nonce=nonce)
    return {
        "name": name,
        "text": code.text(),
        "node_id": node_id,
        "token": tok,
        "hub_url": hub_url,
        "pin": pin,
        "lookup_id": code.lookup_id,
        "nonce": nonce.hex(),
        "bundle": bundle.decode(),
        "sealed": base64.b64encode(sealed).decode(),
    }


def main() -> None:
    longest_url = "https://hub." + "a" * 40 + ".example.id:8443/pintu"
    vectors = [
        valid("plain", "main-in-1", token(0), "http://hub.local:8080", bytes(12)),
        valid("https_with_path", "gate.2_b", token(16), "https://hub.example.id/pintu",
              bytes(range(12))),
        valid("long_node_id", "n" * 64, token(32), longest_url, bytes(range(12, 24))),
        valid("facility_pin", "main-in-1", token(0), "https://hub.local:8443", bytes(12),
              pin=token(48)),
    ]  # fmt: skip
    plain = vectors[0]["text"]
    bad = [
        {"name": "empty", "text": "", "error": "no PINTU-PROV1: prefix"},
        {"name": "a_pass", "text": "PINTU1:AAAA", "error": "no PINTU-PROV1: prefix"},
        {"name": "version_2", "text": plain.replace("PROV1", "PROV2"), "error": "prefix"},
        {"name": "two_fields", "text": "PINTU-PROV1:m|" + token(0), "error": "node id, token"},
        {"name": "short_token", "text": "PINTU-PROV1:m|abc|http://h", "error": "22 base64url"},
        {"name": "bad_node_id", "text": f"PINTU-PROV1:-x|{token(0)}|http://h", "error": "node id"},
        {"name": "not_http", "text": f"PINTU-PROV1:n|{token(0)}|ftp://h", "error": "hub URL"},
        {"name": "query", "text": f"PINTU-PROV1:n|{token(0)}|http://h/?a=1", "error": "hub URL"},
        {"name": "short_pin", "text": plain + "|abc", "error": "facility pin"},
        {"name": "five_fields", "text": plain + "|" + token(48) + "|x", "error": "facility pin"},
        {"name": "oversize", "text": plain + "/" + "x" * 300, "error": "too long"},
    ]  # fmt: skip
    doc = {
        "format": "PINTU-PROV1",
        "max_text_length": enrolment.MAX_TEXT_LENGTH,
        "vectors": vectors,
        "bad": bad,
    }
    out = HERE / "provisioning.json"
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")  # noqa: T201 - a script run by hand


if __name__ == "__main__":
    main()
