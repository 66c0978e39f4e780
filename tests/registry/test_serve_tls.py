"""`mamoru serve` speaks HTTPS by default, with a certificate made on this machine.

A real server process on a real socket: the certificate it generated on first
run is what a client pins (no "accept any certificate"), its fingerprint is
the one printed for a person to compare, its key is readable by the owner
only, and a person logs in and out over it. The certificate's own rules
(names, 825 days, renewal, a store's own pair) are checked without a server.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mamoru.settings import ConfigError
from mamoru.tls import VALIDITY, ensure_certificate, load_certificate
from registry.api.sessions import COOKIE_NAME
from tests.registries import PASSWORD, Registry
from tests.waiting import answers, running, wait_until


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.server
def test_serve_generates_a_certificate_and_serves_https_with_it(registry: Registry) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(registry.data_dir)}
    server = subprocess.Popen([sys.executable, "-m", "mamoru", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tls_dir = registry.data_dir / "tls"
    base = f"https://127.0.0.1:{port}"
    try:
        wait_until((tls_dir / "key.pem").is_file, 60, "a certificate", alive=running(server))
        trust = ssl.create_default_context(cafile=str(tls_dir / "cert.pem"))
        wait_until(answers(base + "/api/v1/session", 401, verify=trust), 60,
                   "the server to come up", alive=running(server))
        with httpx.Client(base_url=base, verify=trust, timeout=10) as client:
            login = client.post("/api/v1/session",
                                json={"username": "mgr1", "password": PASSWORD})
            assert login.status_code == 200, login.text
            assert "secure" in login.headers["set-cookie"].lower()
            assert login.headers["strict-transport-security"].startswith("max-age=")
            assert COOKIE_NAME in client.cookies  # kept by the jar: this is https
            assert client.get("/api/v1/session").json()["username"] == "mgr1"
            csrf = login.json()["csrf_token"]
            assert client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}
                                 ).status_code == 204
            assert client.get("/api/v1/session").status_code == 401
        served = ssl.get_server_certificate(("127.0.0.1", port))
        _only_forward_secret_aead_suites(port, tls_dir / "cert.pem")
        # Not trusted without the pinned certificate; no plain HTTP on the port.
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=5) as stranger:
            stranger.get(f"{base}/api/v1/session")
        with pytest.raises(httpx.TransportError), httpx.Client(timeout=5) as plain:
            plain.get(f"http://127.0.0.1:{port}/api/v1/session")
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -15), output
    assert "Traceback" not in output and PASSWORD not in output
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest().upper()
    printed = next(line for line in output.splitlines() if "fingerprint" in line)
    assert printed.endswith(":".join(digest[i:i + 2] for i in range(0, 64, 2)))
    assert f"https://127.0.0.1:{port}/" in output
    assert stat.S_IMODE((tls_dir / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700


def _handshake(port: int, cafile: Path, *, ciphers: str) -> str:
    """A real TLS 1.2 handshake offering only `ciphers`; the suite agreed (or ssl.SSLError)."""
    client = ssl.create_default_context(cafile=str(cafile))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        suite = tls.cipher()
        assert suite is not None
        return suite[0]


def _only_forward_secret_aead_suites(port: int, cafile: Path) -> None:
    """TLS 1.2 with ECDHE and an AEAD cipher is spoken; CBC suites and static RSA never."""
    assert "GCM" in _handshake(port, cafile, ciphers="ECDHE+AESGCM")
    assert "CHACHA20" in _handshake(port, cafile, ciphers="ECDHE+CHACHA20")
    for cbc in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384",
                "ECDHE-ECDSA-AES128-SHA256", "AES128-SHA"):
        with pytest.raises(ssl.SSLError):
            _handshake(port, cafile, ciphers=cbc)


def test_the_certificate_names_this_host_and_lasts_825_days(tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    files = ensure_certificate(tmp_path / "tls", extra_names=("shop-42.local", "192.168.1.10"),
                               now=now)
    assert files.created
    certificate = x509.load_pem_x509_certificate(files.cert.read_bytes())
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    for name in ("localhost", "127.0.0.1", "::1", socket.gethostname(), "shop-42.local",
                 "192.168.1.10"):
        assert name in files.names
    assert certificate.not_valid_after_utc - now == VALIDITY == timedelta(days=825)
    again = ensure_certificate(tmp_path / "tls", now=now + timedelta(days=400))
    assert not again.created and again.fingerprint_sha256 == files.fingerprint_sha256
    renewed = ensure_certificate(tmp_path / "tls", now=now + timedelta(days=800))
    assert renewed.created and renewed.fingerprint_sha256 != files.fingerprint_sha256


def test_a_half_or_mismatched_pair_is_refused_in_one_line(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path / "a")
    second = ensure_certificate(tmp_path / "b")
    with pytest.raises(ConfigError, match="is not the key of the certificate"):
        load_certificate(first.cert, second.key)
    second.key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_certificate(second.cert, second.key)
    first.key.unlink()
    with pytest.raises(ConfigError, match="only one of"):
        ensure_certificate(tmp_path / "a")
    second.key.chmod(0o600)
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        load_certificate(second.key, second.key)
