"""The local endpoint's TLS: a certificate authority of its own, trusted only by the pipeline's clients.

The state bucket refuses requests that do not come over TLS, on the local target as on AWS; so the
embedded endpoint serves HTTPS. Its certificate is signed by a CA made here whose private key is
never written: nothing can sign another certificate the clients would trust.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline import atomic_file

HOST = "127.0.0.1"
LIFETIME = datetime.timedelta(days=365)
# Renewed this long before expiry, so a long run never meets an expired certificate.
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Files:
    ca: Path  # the bundle clients trust: AWS_CA_BUNDLE
    cert: Path
    key: Path

    @classmethod
    def under(cls, directory: Path) -> Files:
        return cls(directory / "ca.pem", directory / "endpoint.pem", directory / "endpoint-key.pem")


def ensure(directory: Path, now: datetime.datetime | None = None) -> Files:
    """The endpoint's CA, certificate and key in directory, made (or renewed) when missing or near expiry."""
    files = Files.under(directory)
    moment = now or datetime.datetime.now(datetime.UTC)
    if not _valid_until(files, moment + RENEW_BEFORE):
        _write(files, moment)
    return files


def _valid_until(files: Files, moment: datetime.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        x509.load_pem_x509_certificate(files.ca.read_bytes())
        serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc > moment


def _write(files: Files, now: datetime.datetime) -> None:
    files.ca.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet-pipeline local endpoint CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]), ca_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Files are made owner-only (mkstemp), the key included.
    atomic_file.write(files.key, key_pem)
    atomic_file.write(files.cert, cert.public_bytes(pem))
    atomic_file.write(files.ca, ca.public_bytes(pem))


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
