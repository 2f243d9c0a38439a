"""Fixtures for the Dagster code: resources pointing at the test's own database and prefix.

The hand-written raw rows and the dbt runner live in tests/dbt_project/raw_rows.py, importable from
every test (pytest's `pythonpath` in pyproject.toml), so both test folders share one copy.
"""

from __future__ import annotations

import pytest

from tweetflow.settings import Settings


@pytest.fixture
def resources(test_settings: Settings) -> dict[str, object]:
    """The Definitions' resources, aimed at the test's database, topic, group and Redis prefix."""
    from dagster_dbt import DbtCliResource

    from analytics_pipeline.dbt_models import DBT_EXECUTABLE, dbt_project
    from analytics_pipeline.resources import TweetflowResource

    return {"tweetflow": TweetflowResource.for_settings(test_settings),
            "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)}
