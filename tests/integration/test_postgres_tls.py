"""TLS to PostgreSQL with libpq's sslmode meanings, against a private server with ssl=on and a
certificate for `localhost` signed by a CA this test makes (and a second CA that signed nothing)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from private_postgres import PrivatePostgres, private_postgres
from support import run_beast

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.stores.db.postgres import PostgresDatabase
from trinity_beast.stores.environment import load_settings


def _ca(name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(ca_key, ca_cert, dns_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem_key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivatePostgres, Path, Path]]:
    """(server, the CA that signed its `localhost` certificate, a CA that did not)."""
    from cryptography.hazmat.primitives import serialization

    pem = serialization.Encoding.PEM
    ca_key, ca_cert = _ca("Trinity Beast test CA")
    _, other_cert = _ca("Someone else's CA")
    key, cert = _server_cert(ca_key, ca_cert, "localhost")
    certs = tmp_path_factory.mktemp("ca")
    (certs / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (certs / "other-ca.pem").write_bytes(other_cert.public_bytes(pem))
    # hostssl for TCP from anywhere local, plain `host` too so sslmode=disable can be seen to work.
    hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    with private_postgres(
        {"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"},
        {"server.crt": cert, "server.key": key},
        hba,
    ) as server:
        yield server, certs / "ca.pem", certs / "other-ca.pem"


def url(server: PrivatePostgres, host: str, **query: str | Path) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"postgresql://postgres@{host}:{server.port}/postgres" + (f"?{q}" if q else "")


def ssl_in_use(db_url: str) -> bool:
    """What the server itself says about this connection (pg_stat_ssl)."""
    db = PostgresDatabase(db_url)
    try:
        [[used]] = db.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return bool(used)
    finally:
        db.close()


def refusal(db_url: str) -> str:
    with pytest.raises(DatabaseUnavailable) as caught:
        PostgresDatabase(db_url)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_require_encrypts_without_checking_the_certificate(tls) -> None:
    server, _, _ = tls
    assert ssl_in_use(url(server, "127.0.0.1", sslmode="require")) is True  # an untrusted CA, an IP: still fine


def test_disable_connects_in_plain_text(tls) -> None:
    server, _, _ = tls
    assert ssl_in_use(url(server, "127.0.0.1", sslmode="disable")) is False
    assert ssl_in_use(url(server, "127.0.0.1")) is False  # no sslmode: disable, as before


def test_verify_ca_and_verify_full_succeed_with_the_right_ca(tls) -> None:
    server, ca, _ = tls
    assert ssl_in_use(url(server, "127.0.0.1", sslmode="verify-ca", sslrootcert=ca)) is True  # no host name check
    assert ssl_in_use(url(server, "localhost", sslmode="verify-full", sslrootcert=ca)) is True


def test_verify_full_refuses_a_host_name_the_certificate_does_not_list(tls) -> None:
    server, ca, _ = tls
    message = refusal(url(server, "127.0.0.1", sslmode="verify-full", sslrootcert=ca))
    assert message.startswith(
        f"TLS certificate check failed for PostgreSQL at 127.0.0.1:{server.port} (sslmode=verify-full): "
    )
    assert "mismatch" in message and "'127.0.0.1'" in message and "sslmode=verify-ca" in message


@pytest.mark.parametrize(
    "mode,host", [("verify-ca", "127.0.0.1"), ("verify-full", "localhost"), ("require", "localhost")]
)
def test_verification_fails_against_an_untrusted_ca(tls, mode: str, host: str) -> None:
    server, _, other = tls
    message = refusal(url(server, host, sslmode=mode, sslrootcert=other))  # require + sslrootcert = verify-ca
    assert f"(sslmode={mode})" in message and "unable to get local issuer certificate" in message
    assert f"its CA is not in {other}" in message


def test_verification_fails_against_the_system_store(tls) -> None:
    server, _, _ = tls
    message = refusal(url(server, "localhost", sslmode="verify-full"))
    assert "its CA is not in the system CA store" in message


@pytest.mark.parametrize(
    "query,error",
    [
        (
            "sslmode=prefer",
            "DATABASE_URL: sslmode: expected one of disable, require, verify-ca, verify-full, got 'prefer'",
        ),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "DATABASE_URL: sslrootcert: no such file '/nonexistent/ca.pem'",
        ),
        (
            "sslmode=disable&sslrootcert=/etc/hostname",
            "DATABASE_URL: sslrootcert is set but sslmode=disable turns TLS off",
        ),
        ("sslmode=require&sslmode=disable", "DATABASE_URL: sslmode given more than once"),
    ],
)
def test_bad_tls_settings_stop_start_up_with_one_line(query: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": f"postgresql://u@h/db?{query}"})
    assert str(caught.value) == error


def test_a_file_that_is_not_a_ca_bundle_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: sslrootcert '.*ca.pem' is not a PEM CA bundle"):
        PostgresDatabase(f"postgresql://u@127.0.0.1:1/db?sslmode=verify-ca&sslrootcert={bogus}")


def test_beast_migrate_says_why_in_one_line(tls, tmp_path: Path) -> None:
    server, ca, _ = tls
    env = {**os.environ, "DATABASE_URL": url(server, "127.0.0.1", sslmode="verify-full", sslrootcert=ca)}
    result = run_beast(["migrate"], env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr  # a start-up failure: one line, exit 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TLS certificate check failed for PostgreSQL" in lines[0], result.stderr
    env["DATABASE_URL"] = url(server, "localhost", sslmode="verify-full", sslrootcert=ca)
    assert run_beast(["migrate"], env, cwd=tmp_path).returncode == 0
