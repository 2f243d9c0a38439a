"""A database with the marts built over the hand-written sample (raw_rows.sample_tweets)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from raw_rows import load_sample, run_dbt

from tweetflow.settings import Settings


@pytest.fixture(scope="module")
def built(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database of its own holding the sample rows and everything `dbt build` makes of them."""
    from tweetflow.clients import clickhouse_client
    from tweetflow.schema import ensure_schema

    settings = stack.model_copy(
        update={"clickhouse_database": f"dbt_marts_{uuid.uuid4().hex[:10]}"})
    ensure_schema(settings)
    try:
        load_sample(settings)
        run_dbt(settings, "build", work_dir=tmp_path_factory.mktemp("dbt"))
        yield settings
    finally:
        clickhouse_client(settings, database="default").command(
            f"DROP DATABASE IF EXISTS `{settings.clickhouse_database}`")

