"""Progress reporting: a live bar on a terminal, a few plain log lines elsewhere.

CI logs and ``dvc repro`` piped to a file stay short: when stderr is not a TTY the
bar prints at most ``log_every`` evenly spaced lines plus the final one.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work done toward ``total``; ``update(n)`` adds ``n`` units."""

    def __init__(self, label: str, total: float | None, unit: str = "", stream: TextIO | None = None,
                 log_every: int = 4, tty: bool | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every = max(1, log_every)
        self.done = 0.0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._next_log = 1
        self.info = ""

    def update(self, n: float = 1, info: str = "") -> None:
        self.done += n
        if info:
            self.info = info
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw > 0.1 or (self.total and self.done >= self.total):
                self._last_draw = now
                self.stream.write("\r" + self._line())
                self.stream.flush()
        elif self.total:
            # plain mode: one line each time another 1/log_every of the work is done
            if self._next_log <= self.log_every and self.done >= self.total * self._next_log / self.log_every:
                self.stream.write(self._line() + "\n")
                while self._next_log <= self.log_every and self.done >= self.total * self._next_log / self.log_every:
                    self._next_log += 1

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
            text = f"{self.label} [{bar}] {100 * frac:5.1f}% {_fmt(self.done)}/{_fmt(self.total)}{self.unit}"
        else:
            text = f"{self.label} {_fmt(self.done)}{self.unit}"
        text += f" {elapsed:.0f}s"
        return text + (f" {self.info}" if self.info else "")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line() + "\n")
        elif not self.total or self._next_log <= self.log_every:
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"
