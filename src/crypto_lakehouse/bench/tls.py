"""A throwaway certificate authority and server certificate for 127.0.0.1.

The real archive answers only over HTTPS, and over HTTPS the clients negotiate HTTP/2: one
connection carries every request. Over plain HTTP/1.1 a client that does not keep enough
idle connections (s5cmd keeps two per host) opens about one connection per request. A
benchmark that plays the archive on loopback must therefore serve it over TLS too, with a
certificate its clients trust: this one, made per run and removed with the run's folder.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 2
# Where clients look for extra authorities: s5cmd and boto3 read AWS_CA_BUNDLE; Go's
# default and rclone (which fails with AWS_CA_BUNDLE set, so it is removed for rclone) read
# SSL_CERT_FILE.
CA_VARIABLES = ("AWS_CA_BUNDLE", "SSL_CERT_FILE")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the authority's certificate: what clients trust (CA_VARIABLES)
    cert: Path  # the server's certificate for 127.0.0.1, signed by the authority
    key: Path  # the server's private key


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_tls_files(folder: Path) -> TlsFiles:
    """Write a new authority and a 127.0.0.1 server certificate signed by it to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = (
        now - datetime.timedelta(minutes=5),
        now + datetime.timedelta(days=VALID_DAYS),
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("crypto-lakehouse bench CA"))
        .issuer_name(_name("crypto-lakehouse bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(str(LOOPBACK)))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files


@contextmanager
def trusting(ca: Path) -> Iterator[None]:
    """Every client started inside the block trusts `ca`; the environment is restored after."""
    with mock.patch.dict(os.environ, {name: str(ca) for name in CA_VARIABLES}):
        yield
