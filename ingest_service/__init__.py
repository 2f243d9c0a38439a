"""The IngestService: clients stream Tweet payloads over gRPC; the valid ones go to the raw topic
keyed by Tweet id, and Publish answers once Kafka has acknowledged them all.

Why validate here although the consumers parse again: a payload with no Tweet id has no key, so it
would land on a random partition and be dead-lettered later, far from the client that sent it.
Rejecting it in the answer tells that client now. Valid payloads are published byte for byte.

`service` publishes and counts, `server` runs it on the shared gRPC scaffold
(tweetflow.grpc_server), `client` is the helper applications call.
"""
