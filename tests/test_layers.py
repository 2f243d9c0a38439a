"""The layers import one way, and only the settings module reads the environment (no stack needed).

    core (tweetflow/, but tweetflow/app/)  <-  streaming/  <-  ingest_service/, query_service/
        <-  analytics_pipeline/  <-  application (tweetflow/app/: CLI, stack, demo, UI)

A package may import its own layer and the layers to its left; the two services do not import
each other. Checked on the source (every `import` statement, lazy ones inside functions too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# layer -> the project packages it may import (besides third-party code)
ALLOWED = {
    "tweetflow": {"tweetflow"},
    "streaming": {"tweetflow", "streaming"},
    "ingest_service": {"tweetflow", "streaming", "ingest_service"},
    "query_service": {"tweetflow", "streaming", "query_service"},
    "analytics_pipeline": {"tweetflow", "streaming", "ingest_service", "query_service",
                           "analytics_pipeline"},
    "tweetflow.app": {"tweetflow", "streaming", "ingest_service", "query_service",
                      "analytics_pipeline", "tweetflow.app"},
}
PROJECT_PACKAGES = {*ALLOWED, "bench"}


def _layer(module: str) -> str | None:
    """The layer of a module name, or None for code outside the project."""
    if module == "tweetflow.app" or module.startswith("tweetflow.app."):
        return "tweetflow.app"
    top = module.split(".")[0]
    return top if top in PROJECT_PACKAGES else None


def _source_files(layer: str) -> list[Path]:
    root = PROJECT_ROOT.joinpath(*layer.split("."))
    files = [p for p in root.rglob("*.py") if "v1" not in p.relative_to(PROJECT_ROOT).parts]
    if layer == "tweetflow":
        files = [p for p in files if "app" not in p.relative_to(root).parts]
    return files


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    offenders = [f"{path.relative_to(PROJECT_ROOT)} imports {name}"
                 for path in _source_files(layer) for name in sorted(_imports(path))
                 if _layer(name) is not None and _layer(name) not in ALLOWED[layer]]
    assert offenders == []


# Lines that hand the environment to a child process (a copy with additions) rather than read it.
CHILD_ENVIRONMENT = re.compile(r"\{\*\*os\.environ\b|dict\(os\.environ\)")
# Where the environment is patched for a child that cannot be given one (the reason is in each).
PATCHES_FOR_A_CHILD = {"analytics_pipeline/resources.py", "analytics_pipeline/dbt_models.py"}


def test_only_the_settings_module_reads_the_environment() -> None:
    offenders = []
    for layer in ALLOWED:
        for path in _source_files(layer):
            relative = str(path.relative_to(PROJECT_ROOT))
            if relative == "tweetflow/settings.py" or relative in PATCHES_FOR_A_CHILD:
                continue
            offenders += [f"{relative}:{number}: {line.strip()}"
                          for number, line in enumerate(path.read_text().splitlines(), 1)
                          if re.search(r"os\.environ|getenv", line)
                          and not CHILD_ENVIRONMENT.search(line)]
    assert offenders == []
