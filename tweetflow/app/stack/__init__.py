"""The local stack: a real Kafka broker, Redis and the embedded ClickHouse endpoint, on loopback."""

from tweetflow.app.stack.manager import Stack, stack_down, stack_status, stack_up

__all__ = ["Stack", "stack_down", "stack_status", "stack_up"]
