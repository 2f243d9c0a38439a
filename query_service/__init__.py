"""The gRPC analytics query service (`tweetflow serve`, `tweetflow query`).

Modules, one job each: `planner` (which store answers which part of a range), `hot_store` (Redis
reads), `marts` (ClickHouse SQL), `cache` (result cache and single-flight), `validation` (request
fields), `service` (the servicer), `auth` (API keys), `interceptors` (metrics and request logs),
`server` (the grpc.aio server), `cli` (the command-line client).
"""
