"""The facility CA: the certificate authority doors and the hub verify the broker with.

``pintu provision broker init`` makes, in the broker directory:

=================  ============================================================
``ca.pem``         the facility CA's certificate: goes into every node bundle and
                   the hub's ``[mqtt] tls_ca_file``
``ca-key.pem``     its private key (0600): stays with the technician's tools
``server.pem``     the broker's certificate, signed by the CA, naming the broker's
                   addresses (``tls_names``)
``server-key.pem`` its private key (0600), read by Mosquitto
=================  ============================================================

A client that verifies against ``ca.pem`` (and the broker's name in its certificate)
talks only to this facility's broker: a rogue broker on the network (DNS or ARP
spoofing) has no certificate from this CA, so a door never sends it its password or its
journal. Keys are ECDSA P-256; the CA lives 20 years, a broker certificate 5.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.errors import BrokerSetupError
from provisioning.files import broker_group

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
CA_DAYS = 20 * 365
SERVER_DAYS = 5 * 365


@dataclass(frozen=True)
class BrokerTls:
    """Where a broker directory keeps its TLS files."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def server_cert(self) -> Path:
        return self.directory / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.directory / SERVER_KEY


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def names_in(cert_path: Path) -> set[str]:
    """The host names and addresses a broker certificate is good for."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )


def ensure(directory: Path, names: Sequence[str], facility: str) -> BrokerTls:
    """Make the CA (once) and a broker certificate naming ``names`` (again when they change)."""
    if not names:
        raise BrokerSetupError("name at least one address the nodes reach the broker at")
    directory.mkdir(parents=True, exist_ok=True)
    files = BrokerTls(directory)
    now = dt.datetime.now(dt.UTC)
    key_path = directory / CA_KEY
    if files.ca_cert.exists() and key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise BrokerSetupError(f"{key_path}: not an ECDSA key")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pintu"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Pintu facility CA {facility}"[:64]),
            ]
        )
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(key_path, _key_pem(ca_key), 0o600)
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    have = files.server_cert.exists() and files.server_key.exists()
    if have and names_in(files.server_cert) == set(names):
        return files
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # Read by Mosquitto: root:mosquitto 0640 when made by root, else the owner's alone.
    group = broker_group()
    _write(files.server_key, _key_pem(server_key), 0o640 if group is not None else 0o600)
    if group is not None:
        os.chown(files.server_key, -1, group)
    _write(files.server_cert, server.public_bytes(serialization.Encoding.PEM), 0o644)
    return files
