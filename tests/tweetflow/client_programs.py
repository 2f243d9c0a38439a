"""The analysts' real client libraries as small programs: the ClickHouse JDBC driver (Java 17, from
Maven Central through tests/clients/jdbc/pom.xml) and clickhouse-go v2 (Go, from the Go module proxy
through tests/clients/go/go.mod and go.sum).

Each is built once into <data dir>/clients/<name>-<digest of its sources>/ and reused while its
sources are unchanged (a warm run starts the program directly). Measured on the 2-core VM: a cold
JDBC build takes ~5 s once Maven's repository holds the jars, the Go build ~60 s with an empty
build cache; warm, both cost nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tweetflow.settings import get_settings

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
JDBC, GO = CLIENTS / "jdbc", CLIENTS / "go"


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "target" not in p.parts)


def _cache(name: str, root: Path) -> Path:
    digest = hashlib.sha256()
    for path in _sources(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return get_settings().data_dir / "clients" / f"{name}-{digest.hexdigest()[:16]}"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed: the analysts' client tests need Java 17, Maven "
                    "and Go (see README)")
    return path


def _build(argv: list[str], cwd: Path, what: str) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900,
                            check=False)
    assert result.returncode == 0, f"building {what} failed:\n{result.stdout}\n{result.stderr}"


def jdbc_command() -> list[str]:
    """`java -cp ... JdbcCheck`, built from tests/clients/jdbc if needed."""
    java, mvn = _tool("java"), _tool("mvn")
    home = _cache("jdbc", JDBC)
    if not (home / ".complete").exists():
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(JDBC, home, ignore=shutil.ignore_patterns("target"))
        _build([mvn, "-q", "-B", "package", "-DskipTests"], home, "the JDBC client")
        (home / ".complete").touch()
    return [java, "-cp", f"{home / 'target' / 'classes'}{os.pathsep}{home / 'target' / 'lib'}/*",
            "JdbcCheck"]


def go_command() -> list[str]:
    """The clickhouse-go program, built from tests/clients/go if needed."""
    go = _tool("go")
    home = _cache("go", GO)
    binary = home / "gocheck"
    if not binary.exists():
        home.mkdir(parents=True, exist_ok=True)
        _build([go, "build", "-o", str(binary.with_suffix(".tmp")), "."], GO, "the Go client")
        binary.with_suffix(".tmp").rename(binary)
    return [str(binary)]


def run_checks(argv: list[str]) -> dict[str, str]:
    """Run a client program; its "check<TAB>result" lines as a dict."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
