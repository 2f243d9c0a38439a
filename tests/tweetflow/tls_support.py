"""Certificates made for one test run with the `openssl` command: a CA, a server certificate for
127.0.0.1/localhost and a client certificate it signed (mutual TLS), and a second, unrelated CA
whose certificates nobody should trust.

Why openssl rather than Python: `cryptography` is not in uv.lock, and the openssl command is
Debian's (installed by tweetflow.app.stack.system_packages when missing, like the stack's tools).
RSA keys in PKCS#8 PEM, which grpcio, granian, librdkafka and Kafka's PEM key stores all read.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tweetflow.app.stack.system_packages import ensure_command

DAYS = "2"


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (PEM) clients and servers trust
    server_cert: Path
    server_key: Path
    server_pem: Path  # key + certificate in one file (Kafka's PEM key store)
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by another CA
    stranger_key: Path
    stranger_ca: Path


def make_pki(directory: Path) -> Pki:
    """Write the CAs, keys and certificates into `directory` (which the caller removes)."""
    openssl = ensure_command({"openssl": "openssl"})
    directory.mkdir(parents=True, exist_ok=True)

    def run(*argv: str) -> None:
        subprocess.run([openssl, *argv], cwd=directory, check=True, capture_output=True)

    def ca(name: str) -> None:
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-days", DAYS, "-subj", f"/CN=tweetflow test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name: str, issuer: str, usage: str) -> None:
        (directory / f"{name}.ext").write_text(
            f"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey",
            f"{issuer}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", DAYS,
            "-extfile", f"{name}.ext")

    ca("ca")
    ca("stranger-ca")
    leaf("server", "ca", "serverAuth")
    leaf("client", "ca", "clientAuth")
    leaf("stranger", "stranger-ca", "clientAuth,serverAuth")
    pem = directory / "server.pem"
    pem.write_text((directory / "server.key").read_text() + (directory / "server.crt").read_text())
    return Pki(ca=directory / "ca.crt", server_cert=directory / "server.crt",
               server_key=directory / "server.key", server_pem=pem,
               client_cert=directory / "client.crt", client_key=directory / "client.key",
               stranger_cert=directory / "stranger.crt", stranger_key=directory / "stranger.key",
               stranger_ca=directory / "stranger-ca.crt")
