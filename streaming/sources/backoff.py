"""When to reconnect a stream: X's published rules, as a small pure policy.

X's "Handling disconnections" page (docs.x.com/x-api/fundamentals/handling-disconnections; tweepy's
`tweepy/streaming.py` uses the same numbers) says:

* once an established connection drops, reconnect at once; if that fails, slow down by the kind
  of error:
* TCP/IP (network) errors: back off linearly, 250 ms more per attempt, up to 16 s;
* HTTP errors for which reconnecting is appropriate: exponentially, from 5 s, doubling, up to 320 s;
* HTTP 429: exponentially from 1 minute, doubling ("every 429 lengthens the time until rate
  limiting is lifted"). X states no ceiling; this one stops doubling at 960 s, past the 15-minute
  window X's connection limits are counted in, where a longer wait gains nothing;
* after a successful connection (HTTP 200) every counter starts again.

A stall (no byte, not even the keep-alive, for 20 s) and an in-stream disconnect message are drops
of an established connection: network errors. The policy has no clock and no sleep: the connector
asks it for the next delay and waits itself, so tests assert the delays it computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Failure", "ReconnectPolicy"]


class Failure(Enum):
    NETWORK = "network"  # refused, reset, cut, stalled, closed by the server or an in-stream notice
    HTTP = "http"  # a status other than 200 and 429 that is worth retrying (5xx, 420)
    RATE_LIMIT = "rate_limit"  # 429


@dataclass
class ReconnectPolicy:
    network_step: float = 0.25
    network_max: float = 16.0
    http_start: float = 5.0
    http_max: float = 320.0
    rate_limit_start: float = 60.0
    rate_limit_max: float = 960.0

    def __post_init__(self) -> None:
        self.connected()

    def connected(self) -> None:
        """An HTTP 200 (or an opened WebSocket): every counter starts again."""
        self._network = 0.0
        self._http = self.http_start
        self._rate_limit = self.rate_limit_start

    def delay(self, failure: Failure) -> float:
        """Seconds to wait before the next attempt after `failure`; advances that counter."""
        if failure is Failure.NETWORK:
            wait, self._network = self._network, min(self._network + self.network_step,
                                                     self.network_max)
        elif failure is Failure.HTTP:
            wait, self._http = self._http, min(self._http * 2, self.http_max)
        else:
            wait, self._rate_limit = self._rate_limit, min(self._rate_limit * 2,
                                                           self.rate_limit_max)
        return wait
