"""Errors that repeat, logged without flooding: the first time, then a count now and then.

A full disk makes every write fail, several times a second, for as long as it
lasts; orchd's own log (on the same disk, perhaps) gets one line when it starts,
one line a minute while it lasts ("... repeated 340 times"), and one when it ends.
"""

from __future__ import annotations

import logging
import threading
import time

EVERY = 60.0  # seconds between two lines about the same repeating error


class Quiet:
    """Rate-limited logging of repeated errors, by key."""

    def __init__(self, logger: logging.Logger, every: float = EVERY) -> None:
        self.logger, self.every = logger, every
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (when last logged, repeats since)

    def log(self, key: str, level: int, message: str, *args: object) -> None:
        """Log `message` the first time for `key`, then at most once every `every` seconds with
        how many times it repeated meanwhile."""
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is None:
                self._seen[key] = (now, 0)
                repeats = -1
            elif now - last[0] >= self.every:
                self._seen[key] = (now, 0)
                repeats = last[1] + 1
            else:
                self._seen[key] = (last[0], last[1] + 1)
                return
        if repeats > 0:
            self.logger.log(level, message + " (repeated %d times)", *args, repeats)
        else:
            self.logger.log(level, message, *args)

    def over(self, key: str, message: str, *args: object) -> None:
        """The error of `key` stopped: say so (with the repeats not yet told), once."""
        with self._lock:
            last = self._seen.pop(key, None)
        if last is None:
            return
        if last[1]:
            self.logger.warning(message + " (after %d more failures)", *args, last[1])
        else:
            self.logger.warning(message, *args)
