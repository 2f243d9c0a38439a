"""Why a question got no answer, independent of the transport that carried it.

The service core raises QueryError with a Status; each transport maps the Status to its own code
by name (grpc.StatusCode for grpcio, connectrpc's Code for Connect, which also sets the HTTP
status: 401, 400, 503 ...). The names are the ones gRPC and Connect share.
"""

from __future__ import annotations

from enum import Enum


class Status(Enum):
    INVALID_ARGUMENT = "a request field is missing or out of range"
    FAILED_PRECONDITION = "the marts the question needs are not built yet"
    UNAVAILABLE = "none of the stores that could answer did"
    DEADLINE_EXCEEDED = "no answer within the call's deadline"
    UNAUTHENTICATED = "no known x-api-key"
    INTERNAL = "a bug or an unexpected store error (logged)"


class QueryError(Exception):
    """A question the service does not answer; `status` says which kind, the message why."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
