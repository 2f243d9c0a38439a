"""Fixtures for the Dagster code: resources pointing at the test's own database and prefix.

The hand-written raw rows and the dbt runner live in tests/dbt_project/raw_rows.py; that folder
goes on sys.path so both test packages share one copy of the sample (tests/ is no package).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dbt_project"))

from tweetflow.settings import Settings


@pytest.fixture
def resources(test_settings: Settings) -> dict[str, object]:
    """The Definitions' resources, aimed at the test's database, topic, group and Redis prefix."""
    from dagster_dbt import DbtCliResource

    from analytics_pipeline.dbt_models import DBT_EXECUTABLE, dbt_project
    from analytics_pipeline.resources import TweetflowResource

    return {"tweetflow": TweetflowResource.for_settings(test_settings),
            "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)}
