"""Trust list and key files: round trips and clear errors for bad files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from protocol.errors import KeyFileError, TrustListError
from protocol.status import Status
from protocol.trust import SigningKey, TrustList


def test_trust_list_roundtrip(tmp_path: Path) -> None:
    key = SigningKey.generate()
    trust = TrustList.of([key.trusted(not_before=1_700_000_000)], updated_at=1_700_000_100)
    path = tmp_path / "trust.json"
    trust.save(path)
    loaded = TrustList.load(path)
    entry = loaded.get(key.kid)
    assert entry is not None
    assert entry.not_before == 1_700_000_000
    assert entry.not_after is None
    assert not entry.revoked
    assert loaded.updated_at == 1_700_000_100
    assert loaded.revoke(key.kid).keys[key.kid].revoked


def test_key_file_roundtrip_is_private(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "k.pem"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).kid == key.kid


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"format": "other", "v": 1, "keys": []}', "'format' must be"),
        ('{"format": "pintu-trust", "v": 9, "keys": []}', "unsupported version"),
        ('{"format": "pintu-trust", "v": 1, "keys": {}}', "'keys' must be a list"),
        ('{"format": "pintu-trust", "v": 1, "keys": [{"alg": "RSA"}]}', "keys[0].alg"),
        (
            '{"format": "pintu-trust", "v": 1, "keys": [{"alg": "Ed25519", "public_key": "xx"}]}',
            "keys[0].public_key",
        ),
    ],
)
def test_bad_trust_list_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "trust.json"
    path.write_text(content)
    with pytest.raises(TrustListError) as err:
        TrustList.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_trust_entry_with_wrong_kid_or_unknown_field_is_refused() -> None:
    doc = TrustList.of([SigningKey.generate().trusted()]).to_json()
    doc["keys"][0]["kid"] = "00000000"
    with pytest.raises(TrustListError, match="does not match"):
        TrustList.from_json(doc)
    doc = TrustList.of([SigningKey.generate().trusted()]).to_json()
    doc["keys"][0]["colour"] = "green"
    with pytest.raises(TrustListError, match="unknown field 'colour'"):
        TrustList.from_json(doc)
    doc = TrustList.of([SigningKey.generate().trusted()]).to_json()
    doc["keys"][0]["not_before"] = "2026-01-01T00:00:00"
    with pytest.raises(TrustListError, match="no UTC offset"):
        TrustList.from_json(json.loads(json.dumps(doc)))


def test_missing_and_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        SigningKey.load(tmp_path / "nope.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        SigningKey.load(bad)


def test_status_parse() -> None:
    assert Status.parse(" Black ") is Status.BLACK
    with pytest.raises(ValueError, match="green, yellow, red, black"):
        Status.parse("purple")
