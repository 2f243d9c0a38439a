"""TLS of tweetflow's own services and of the local clients that call them, from the settings
(TWEETFLOW_TLS_CERT, _KEY, _CLIENT_CA on the servers; TWEETFLOW_TLS_CA, _CLIENT_CERT, _CLIENT_KEY
on the clients). PEM files.

Why both transports share one configuration: `tweetflow serve` answers gRPC (grpcio) and Connect
(granian) for the same core; a deployment gives it one certificate, and the API key in `x-api-key`
travels encrypted on both. With TWEETFLOW_TLS_CLIENT_CA set, both ask for a client certificate
signed by that CA and refuse connections without one (mutual TLS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tweetflow.settings import Settings


def _read(path: str, variable: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{variable}={path}: cannot read it: {exc}") from exc


@dataclass(frozen=True)
class ServerTls:
    """The services' certificate chain and key, and the CA of the client certificates they
    require (None: none asked)."""

    cert: Path
    key: Path
    client_ca: Path | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerTls | None:
        """None when neither TWEETFLOW_TLS_CERT nor _KEY is set (plaintext); an error naming
        what is missing or unreadable otherwise."""
        if not settings.tls_cert and not settings.tls_key:
            if settings.tls_client_ca:
                raise ValueError("TWEETFLOW_TLS_CLIENT_CA needs TWEETFLOW_TLS_CERT and "
                                 "TWEETFLOW_TLS_KEY (mutual TLS is TLS)")
            return None
        missing = [name for name, value in (("TWEETFLOW_TLS_CERT", settings.tls_cert),
                                            ("TWEETFLOW_TLS_KEY", settings.tls_key)) if not value]
        if missing:
            raise ValueError(f"TLS needs both TWEETFLOW_TLS_CERT and TWEETFLOW_TLS_KEY; "
                             f"{missing[0]} is not set")
        tls = cls(Path(settings.tls_cert), Path(settings.tls_key),
                  Path(settings.tls_client_ca) if settings.tls_client_ca else None)
        tls.grpc_credentials()  # reads every file now: a wrong path fails at start
        return tls

    def grpc_credentials(self) -> Any:
        import grpc

        client_ca = (_read(str(self.client_ca), "TWEETFLOW_TLS_CLIENT_CA")
                     if self.client_ca else None)
        return grpc.ssl_server_credentials(
            [(_read(str(self.key), "TWEETFLOW_TLS_KEY"), _read(str(self.cert), "TWEETFLOW_TLS_CERT"))],
            root_certificates=client_ca, require_client_auth=client_ca is not None)

    @property
    def description(self) -> str:
        return "TLS, client certificates required" if self.client_ca else "TLS"


def client_uses_tls(settings: Settings) -> bool:
    """Local clients call the services over TLS when the services serve it (TWEETFLOW_TLS_CERT
    set in the same settings) or a CA to trust is given (TWEETFLOW_TLS_CA)."""
    return bool(settings.tls_cert or settings.tls_ca)


def grpc_client_credentials(settings: Settings) -> Any:
    """Channel credentials trusting TWEETFLOW_TLS_CA (default: the system's roots), presenting
    TWEETFLOW_TLS_CLIENT_CERT and _KEY when set (mutual TLS)."""
    import grpc

    def optional(path: str, variable: str) -> bytes | None:
        return _read(path, variable) if path else None

    return grpc.ssl_channel_credentials(
        root_certificates=optional(settings.tls_ca, "TWEETFLOW_TLS_CA"),
        private_key=optional(settings.tls_client_key, "TWEETFLOW_TLS_CLIENT_KEY"),
        certificate_chain=optional(settings.tls_client_cert, "TWEETFLOW_TLS_CLIENT_CERT"))
