"""Cluster mode: the example cluster config, the Replicated + Distributed DDL tweetflow generates
for it (parsed by ClickHouse's own parser), and the single-server DDL executed for real."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from deploy_support import DEPLOY, env_example

from tweetflow.clients import clickhouse_client
from tweetflow.schema import (
    MART_DAY_VERSIONS,
    RAW_DAY_VERSIONS,
    RAW_TWEET_EDITS,
    RAW_TWEETS,
    TWEET_DELETES,
    schema_statements,
)
from tweetflow.settings import Settings

CLUSTER_XML = DEPLOY / "clickhouse" / "cluster.xml"
KEEPER_XML = DEPLOY / "clickhouse" / "keeper.xml"
CLUSTER = "tweetflow"


def _cluster_settings(base: Settings | None = None) -> Settings:
    return (base or Settings()).model_copy(update={"clickhouse_cluster": CLUSTER})


def test_example_cluster_is_two_shards_of_two_replicas_with_keeper() -> None:
    root = ET.parse(CLUSTER_XML).getroot()
    (cluster,) = root.find("remote_servers")
    assert cluster.tag == CLUSTER
    shards = cluster.findall("shard")
    assert len(shards) == 2
    hosts = set()
    for shard in shards:
        assert shard.findtext("internal_replication") == "true"
        replicas = shard.findall("replica")
        assert len(replicas) == 2
        hosts.update(r.findtext("host") for r in replicas)
    assert len(hosts) == 4, "every replica is its own server"
    keeper_nodes = {(n.findtext("host"), n.findtext("port")) for n in root.find("zookeeper")}
    keeper = ET.parse(KEEPER_XML).getroot().find("keeper_server")
    raft = {(s.findtext("hostname"), keeper.findtext("tcp_port"))
            for s in keeper.find("raft_configuration")}
    assert keeper_nodes == raft and len(raft) == 3
    assert env_example()["TWEETFLOW_CLICKHOUSE_CLUSTER"] == "", "compose defaults to one server"


def test_cluster_ddl_is_replicated_distributed_and_on_cluster() -> None:
    statements = schema_statements(_cluster_settings(), database="tweetflow")
    ddl = "\n".join(statements)
    assert all(f"ON CLUSTER `{CLUSTER}`" in s for s in statements)
    # raw_tweets, tweet_deletes, raw_day_versions, mart_day_versions, raw_tweet_edits
    assert ddl.count("ReplicatedReplacingMergeTree(") == 5
    for table in (RAW_TWEETS, TWEET_DELETES):
        assert f"`tweetflow`.`{table}_local`" in ddl
        engine = f"Distributed(`{CLUSTER}`, `tweetflow`, `{table}_local`, cityHash64(tweet_id))"
        assert engine in ddl
    macros = {m.tag for m in ET.parse(CLUSTER_XML).getroot().find("macros")}
    used = set(re.findall(r"\{(\w+)\}", ddl))
    assert used == {"shard", "replica"} and used <= macros


def test_cluster_ddl_parses_with_clickhouse_s_parser(stack: Settings) -> None:
    """The running endpoint's ClickHouse parser (formatQuery) accepts every cluster statement;
    it cannot execute them (no Keeper, no remote_servers), see the test below."""
    client = clickhouse_client(stack, database="default")
    try:
        for statement in schema_statements(_cluster_settings(stack), database="tweetflow"):
            formatted = client.query("SELECT formatQuery({q:String})",
                                     parameters={"q": statement}).result_rows[0][0]
            assert f"ON CLUSTER {CLUSTER}" in formatted
    finally:
        client.close()


@pytest.fixture
def scratch_database(stack: Settings) -> Iterator[str]:
    name = f"deploy_{uuid.uuid4().hex[:10]}"
    yield name
    client = clickhouse_client(stack, database="default")
    client.command(f"DROP DATABASE IF EXISTS `{name}`")
    client.close()


def test_single_server_ddl_executes(test_settings: Settings) -> None:
    """From an empty server: the fixture's database is dropped, then every statement runs."""
    database = test_settings.clickhouse_database
    client = clickhouse_client(test_settings, database="default")
    try:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
        for statement in schema_statements(test_settings):
            client.command(statement)
        engines = dict(client.query(
            "SELECT name, engine FROM system.tables WHERE database = {db:String}",
            parameters={"db": database}).result_rows)
    finally:
        client.close()
    assert engines == {RAW_TWEETS: "ReplacingMergeTree", TWEET_DELETES: "ReplacingMergeTree",
                       RAW_DAY_VERSIONS: "ReplacingMergeTree", MART_DAY_VERSIONS: "ReplacingMergeTree",
                       RAW_TWEET_EDITS: "ReplacingMergeTree", f"{RAW_TWEET_EDITS}_mv": "MaterializedView"}


def test_cluster_ddl_executes_on_a_real_cluster(stack: Settings, scratch_database: str) -> None:
    client = clickhouse_client(stack, database="default")
    try:
        known = client.command(
            f"SELECT count() FROM system.clusters WHERE cluster = '{CLUSTER}'")
        if not known:
            pytest.skip(f"the ClickHouse at {stack.clickhouse_http_url} has no `{CLUSTER}` "
                        "cluster (remote_servers + Keeper, deploy/clickhouse/cluster.xml); the "
                        "embedded endpoint never has one. Point CLICKHOUSE_URL at such a "
                        "cluster to run this")
        settings = _cluster_settings(stack)
        for statement in schema_statements(settings, database=scratch_database):
            client.command(statement)
        engines = dict(client.query(
            "SELECT name, engine FROM system.tables WHERE database = {db:String}",
            parameters={"db": scratch_database}).result_rows)
        assert engines[RAW_TWEETS] == "Distributed"
        assert engines[f"{RAW_TWEETS}_local"] == "ReplicatedReplacingMergeTree"
        client.command(f"DROP DATABASE IF EXISTS `{scratch_database}` ON CLUSTER `{CLUSTER}` SYNC")
    finally:
        client.close()


def test_users_file_profiles_use_real_settings(stack: Settings) -> None:
    """Every setting the users file puts in a profile exists in this ClickHouse version."""
    root = ET.parse(DEPLOY / "clickhouse" / "users.d" / "tweetflow.xml").getroot()
    names = {setting.tag for profile in root.find("profiles") for setting in profile}
    client = clickhouse_client(stack, database="default")
    try:
        known = set(client.query("SELECT name FROM system.settings WHERE name IN {n:Array(String)}",
                                 parameters={"n": sorted(names)}).result_columns[0])
    finally:
        client.close()
    assert names == known, names - known
    assert root.find("users/analyst/profile").text == "analyst"
    assert root.find("profiles/analyst/readonly").text == "1"
