"""Live sources of `tweetflow produce`: the X API v2 streams and Bluesky's Jetstream.

* `backoff`: X's reconnection rules as a pure policy;
* `live`: reader threads feeding a bounded queue that `run_plan` iterates (shared by all);
* `x_stream`: the filtered, sample and compliance streams; `x_rules`: the filtered stream's rules;
* `jetstream`: Jetstream's WebSocket, its zstd frames and the durable resume cursor.
"""
