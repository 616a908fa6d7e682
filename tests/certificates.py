"""A throw-away certificate authority and a server certificate for 127.0.0.1, for TLS tests."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _signed(subject: str, key, ca: x509.Certificate, ca_key, now: datetime.datetime) -> x509.Certificate:
    """A certificate for ``subject`` (also valid for localhost and 127.0.0.1) signed by the CA."""
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))


def make_certificates(folder: Path) -> dict[str, Path]:
    """``ca.crt``, and ``server.crt`` / ``server.key`` and ``client.crt`` / ``client.key`` signed by
    it (the client's for mutual TLS), each for localhost and 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("thyronet test CA")).issuer_name(_name("thyronet test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = _write_pair(folder, "server", "localhost", ca, ca_key, now)
    client_cert, client_key = _write_pair(folder, "client", "thyronet test client", ca, ca_key, now)
    return {"ca": folder / "ca.crt", "cert": server_cert, "key": server_key, "client_cert": client_cert,
            "client_key": client_key}


def _write_pair(folder: Path, role: str, subject: str, ca: x509.Certificate, ca_key, now) -> tuple[Path, Path]:
    """``<role>.crt`` and its owner-only ``<role>.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate, key_path = folder / f"{role}.crt", folder / f"{role}.key"
    certificate.write_bytes(_signed(subject, key, ca, ca_key, now).public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return certificate, key_path
