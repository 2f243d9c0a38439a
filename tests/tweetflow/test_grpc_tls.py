"""TLS of the services (tweetflow.grpc_server with TWEETFLOW_TLS_CERT / _KEY, and _CLIENT_CA for
mutual TLS): the query service over gRPC and Connect/HTTP and the ingest service serve TLS only,
checked with grpcurl, curl, Python's secure channels and `tweetflow query`, with certificates
made for the test (tls_support)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from qs_support import API_KEY, at, serving, tweet, write_events
from server_support import running
from streaming_support import cli_env, read_topic
from tls_support import Pki, make_pki

from ingest_service.client import publish
from ingest_service.server import start
from tweetflow.app import cli
from tweetflow.app.demo import ensure_grpcurl
from tweetflow.app.stack.system_packages import ensure_command
from tweetflow.clients import grpc_channel
from tweetflow.settings import Settings
from tweetflow.tls import ServerTls
from tweetflow.v1 import ingest_pb2_grpc

pytestmark = pytest.mark.integration
SERVICE = "tweetflow.v1.AnalyticsService"


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    path = Path(tempfile.mkdtemp(prefix="tweetflow-tls-"))
    yield make_pki(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def grpcurl(stack: Settings) -> str:
    found = ensure_grpcurl(stack)  # go install, as `make demo` does
    if found is None:
        pytest.skip("grpcurl could not be installed: `go` is not on PATH (README: Go is required)")
    return found


@pytest.fixture(scope="module")
def curl() -> str:
    return ensure_command({"curl": "curl"})


def tls(settings: Settings, pki: Pki, *, mutual: bool = False) -> Settings:
    """`settings` whose services serve TLS and whose local clients trust the test's CA."""
    fields = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key),
              "tls_ca": str(pki.ca)}
    if mutual:
        fields |= {"tls_client_ca": str(pki.ca), "tls_client_cert": str(pki.client_cert),
                   "tls_client_key": str(pki.client_key)}
    return settings.model_copy(update=fields)


def _seed(settings: Settings) -> dict[str, int]:
    """Six Tweets in the last six minutes; the trending hashtags they make."""
    minute = int(time.time()) // 60 * 60
    write_events(settings, [tweet(at(minute - 60 * i - 30), i, hashtags=("tls", "python"))
                            for i in range(6)])
    return {"tls": 6, "python": 6}


def _hashtags(answer: str) -> dict[str, int]:
    return {h["hashtag"]: int(h["count"]) for h in json.loads(answer)["hashtags"]}


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _grpcurl(grpcurl: str, address: str, *options: str,
             method: str | None = None) -> subprocess.CompletedProcess[str]:
    """`grpcurl OPTIONS ADDRESS list`, or a call of `method` for the last hour's trending."""
    call = ["-H", f"x-api-key: {API_KEY}", "-d", '{"window": "3600s", "limit": 5}']
    return _run([grpcurl, *options, *(call if method else []), address, method or "list"])


def _refused(grpcurl: str, address: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`grpcurl list` expected to fail: a refused handshake is retried until the connect timeout
    (10 s by default), so a shorter one."""
    return _grpcurl(grpcurl, address, "-connect-timeout", "3", *options)


def test_query_service_serves_grpc_and_http_over_tls_only(
        test_settings: Settings, pki: Pki, grpcurl: str, curl: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    s = tls(test_settings, pki)
    trending = _seed(s)
    with serving(s, http=True) as served:
        address, port = served.address, served.http_url.rsplit(":", 1)[1]
        https = f"https://127.0.0.1:{port}"
        listed = _grpcurl(grpcurl, address, "-cacert", str(pki.ca))
        assert listed.returncode == 0, listed.stderr
        assert SERVICE in listed.stdout.split()
        asked = _grpcurl(grpcurl, address, "-cacert", str(pki.ca),
                         method=f"{SERVICE}/TrendingHashtags")
        assert asked.returncode == 0, asked.stderr
        assert _hashtags(asked.stdout) == trending

        assert _refused(grpcurl, address, "-plaintext").returncode != 0  # TLS only
        untrusted = _refused(grpcurl, address, "-cacert", str(pki.stranger_ca))
        assert untrusted.returncode != 0 and "certificate" in untrusted.stderr

        health = _run([curl, "-sS", "--cacert", str(pki.ca), f"{https}/healthz"])
        assert health.returncode == 0, health.stderr
        connect = _run([curl, "-sS", "--fail", "--cacert", str(pki.ca), "-H",
                        "content-type: application/json", "-H", f"x-api-key: {API_KEY}",
                        "-d", '{"window": "3600s", "limit": 5}',
                        f"{https}/{SERVICE}/TrendingHashtags"])
        assert connect.returncode == 0, connect.stderr
        assert _hashtags(connect.stdout) == trending
        plain = _run([curl, "-sS", "--fail", f"http://127.0.0.1:{port}/healthz"])
        assert plain.returncode != 0  # no answer in cleartext

        with grpc_channel(s, address) as channel:  # Python: the settings' CA
            stub = health_pb2_grpc.HealthStub(channel)
            assert stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
                              ).status == health_pb2.HealthCheckResponse.SERVING
        with cli_env(s.model_copy(update={"query_addr": address, "api_key": API_KEY})):
            assert cli.main(["query", "trending", "--window", "1h", "--json"]) == 0
        assert _hashtags(capsys.readouterr().out) == trending


def test_mutual_tls_requires_a_client_certificate_of_the_ca(
        test_settings: Settings, pki: Pki, grpcurl: str, curl: str) -> None:
    s = tls(test_settings, pki, mutual=True)
    with serving(s, http=True) as served:
        address, port = served.address, served.http_url.rsplit(":", 1)[1]
        mine = ("-cacert", str(pki.ca), "-cert", str(pki.client_cert), "-key", str(pki.client_key))
        assert _grpcurl(grpcurl, address, *mine).returncode == 0
        assert _refused(grpcurl, address, "-cacert", str(pki.ca)).returncode != 0
        stranger = ("-cacert", str(pki.ca), "-cert", str(pki.stranger_cert), "-key",
                    str(pki.stranger_key))
        assert _refused(grpcurl, address, *stranger).returncode != 0

        url = f"https://127.0.0.1:{port}/healthz"
        assert _run([curl, "-sS", "--fail", "--cacert", str(pki.ca), "--cert",
                     str(pki.client_cert), "--key", str(pki.client_key), url]).returncode == 0
        assert _run([curl, "-sS", "--fail", "--cacert", str(pki.ca), url]).returncode != 0

        with grpc_channel(s, address) as channel:  # the settings' client certificate
            stub = health_pb2_grpc.HealthStub(channel)
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
        without = s.model_copy(update={"tls_client_cert": "", "tls_client_key": ""})
        with grpc_channel(without, address) as channel, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


def test_ingest_service_publishes_over_tls(test_settings: Settings, pki: Pki,
                                           grpcurl: str) -> None:
    s = tls(test_settings, pki, mutual=True)
    payload = orjson.dumps({"created_at": "Wed Oct 10 20:19:24 +0000 2018",
                            "id_str": "1050118621198921728", "text": "over #tls",
                            "user": {"id_str": "6253282", "screen_name": "api"}})
    with running(lambda: start(s, 0, api_keys=(API_KEY,))) as server:
        address = f"127.0.0.1:{server.port}"
        with grpc_channel(s, address) as channel:
            summary = publish(ingest_pb2_grpc.IngestServiceStub(channel), [payload],
                              api_key=API_KEY, timeout=60)
        assert (summary.received, summary.published) == (1, 1)
        assert _refused(grpcurl, address, "-plaintext").returncode != 0
        assert _refused(grpcurl, address, "-cacert", str(pki.ca)).returncode != 0  # no client cert
    assert [r.value for r in read_topic(s)] == [payload]


def test_half_a_tls_configuration_is_a_clear_error(tmp_path: Path, pki: Pki) -> None:
    assert ServerTls.from_settings(Settings()) is None
    with pytest.raises(ValueError, match="TWEETFLOW_TLS_KEY"):
        ServerTls.from_settings(Settings(tls_cert=str(pki.server_cert)))
    with pytest.raises(ValueError, match="TWEETFLOW_TLS_CERT"):
        ServerTls.from_settings(Settings(tls_key=str(pki.server_key)))
    with pytest.raises(ValueError, match=r"TWEETFLOW_TLS_CLIENT_CA=.*nope\.pem"):
        ServerTls.from_settings(Settings(tls_cert=str(pki.server_cert),
                                         tls_key=str(pki.server_key),
                                         tls_client_ca=str(tmp_path / "nope.pem")))
