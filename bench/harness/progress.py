"""Progress on the terminal while a scenario runs (the bench takes minutes)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class ProgressBar:
    """A one-line progress bar on stderr ('\\r' updates on a terminal, a line per phase otherwise)."""

    WIDTH = 28

    def __init__(self, label: str, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_text = ""
        self._last_draw = 0.0

    def update(self, fraction: float, text: str = "") -> None:
        fraction = min(1.0, max(0.0, fraction))
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw < 0.2 and fraction < 1.0:
                return
            filled = int(self.WIDTH * fraction)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = (f"\r{self.label} [{bar}] {fraction * 100:3.0f}% "
                    f"{now - self.started:5.0f}s {text}")[:150]
            self.stream.write(line.ljust(150))
            self.stream.flush()
        elif text != self._last_text:
            self.stream.write(f"{self.label} {fraction * 100:3.0f}% {now - self.started:5.0f}s "
                              f"{text}\n")
            self.stream.flush()
        self._last_text, self._last_draw = text, now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 150 + "\r")
            self.stream.flush()


def sleep_with_progress(seconds: float, bar: ProgressBar | None, lo: float, hi: float,
                        text: str, stop: Callable[[], bool] | None = None) -> None:
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        if stop and stop():
            return
        if bar:
            bar.update(lo + (hi - lo) * elapsed / seconds, text)
        time.sleep(min(0.25, seconds - elapsed))
