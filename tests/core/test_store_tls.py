"""TLS to MySQL as Azure requires it (`sslRequired: "true"`), against a MariaDB this test
starts itself with certificates it makes (the machine's MariaDB has TLS off): the store
connects over TLS checking the certificate and the host name; plaintext is refused by
the server; a certificate from another CA is refused by the client. (Without
MYSQL_SSL=true, PyMySQL 1.2 still tries TLS, but verifies nothing: "preferred" mode.)"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest
from conftest import free_port, wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import exc as sa_exc

from imgburst.core.settings import Settings
from imgburst.core.store import JobStore


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey,
                 issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
                 ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_ca_and_server(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) as PEM files."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = _certificate("imgburst test CA", ca_key, None, ca=True)
    server = _certificate("localhost", server_key, (ca, ca_key), ca=False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_mariadb(tmp_path):
    """A MariaDB on a free port that accepts only TLS connections; yields (port, CA)."""
    if shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists():
        pytest.fail("mariadbd is missing: .ci/run installs MariaDB")
    data, run = tmp_path / "data", tmp_path / "run"
    run.mkdir()
    ca, cert, key = make_ca_and_server(tmp_path)
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen(
        ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
         f"--port={port}", "--bind-address=127.0.0.1", f"--socket={run / 'sock'}",
         f"--pid-file={run / 'pid'}", f"--ssl-ca={ca}", f"--ssl-cert={cert}",
         f"--ssl-key={key}", "--require-secure-transport=ON", "--skip-log-bin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: (run / "sock").exists() or server.poll() is not None, 60,
               "MariaDB with TLS to start")
    assert server.poll() is None, "MariaDB with TLS exited at start"
    subprocess.run(["mariadb", f"--socket={run / 'sock'}", "-uroot", "-e",
                    "CREATE DATABASE imgburst; CREATE USER 'imgburst'@'%' IDENTIFIED BY "
                    "'tls-test-only'; GRANT ALL ON imgburst.* TO 'imgburst'@'%';"],
                   check=True, capture_output=True, timeout=30)
    yield port, ca
    server.terminate()
    server.wait(timeout=30)


def store_env(port: int, **extra: str) -> dict[str, str]:
    return {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(port), "MYSQL_USER": "imgburst",
            "MYSQL_PASSWORD": "tls-test-only", "MYSQL_DATABASE": "imgburst", **extra}


@pytest.mark.services
def test_the_store_speaks_tls_and_checks_the_server(tls_mariadb, tmp_path):
    port, ca = tls_mariadb
    store = JobStore.from_settings(Settings.from_env(store_env(port, MYSQL_SSL="true",
                                                               MYSQL_SSL_CA=str(ca))))
    with store.engine.connect() as conn:
        cipher = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").one()[1]
    assert cipher, "the connection is not encrypted"
    store.dispose()

    # the server is as Azure's (require_secure_transport): a client without TLS is refused
    # (MariaDB 10.11 says "access denied": the same credentials just worked over TLS)
    with pytest.raises(pymysql.err.OperationalError, match="insecure transport|Access denied"):
        pymysql.connect(host="127.0.0.1", port=port, user="imgburst",
                        password="tls-test-only", ssl_disabled=True)

    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_ca_and_server(tmp_path / "other")
    forged = JobStore.from_settings(Settings.from_env(store_env(
        port, MYSQL_SSL="true", MYSQL_SSL_CA=str(other_ca))))
    with pytest.raises(sa_exc.OperationalError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        forged.ping()  # a server the CA did not vouch for
    forged.dispose()

    check = subprocess.run([sys.executable, "-m", "imgburst.cli", "mysql-check"],
                           env=dict(os.environ, **store_env(port, MYSQL_SSL="true",
                                                           MYSQL_SSL_CA=str(ca))),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "tls-test-only" not in check.stdout + check.stderr
