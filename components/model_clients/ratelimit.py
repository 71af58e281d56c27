"""An asyncio rate limiter in requests per minute and tokens per minute, the units Vertex quotas are stated in.

It schedules rather than polls: each caller reserves the next free slot of both budgets and sleeps until it
comes, so requests leave evenly spaced at the quota's pace (a token bucket drained at a steady rate, in the
"virtual scheduling" form). Budget unused while idle accumulates up to ``burst_s`` seconds' worth, as the quota's
own bucket does. The limiter starts empty, so a run begins at the quota's pace instead of with a burst the server
would answer with 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """Paces requests to ``requests_per_minute`` and their tokens to ``tokens_per_minute``.

    Args:
        requests_per_minute: Requests allowed per minute; None or 0 for no limit.
        tokens_per_minute: Tokens (input plus expected output) allowed per minute; None or 0 for no limit.
        burst_s: Seconds of unused budget that may be spent at once after an idle spell.
        clock: A monotonic clock in seconds (tests pass a fake one).

    Attributes:
        waited_s: Total seconds callers slept in :meth:`acquire`.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if burst_s < 0:
            raise ValueError("burst_s must be >= 0")
        self.requests_per_minute = requests_per_minute or None
        self.tokens_per_minute = tokens_per_minute or None
        self.burst_s = burst_s
        self._clock = clock
        now = clock()
        self._next_request = now
        self._next_token = now
        self._hold_until = now
        self.waited_s = 0.0

    @property
    def limited(self) -> bool:
        """Whether any budget is set."""
        return bool(self.requests_per_minute or self.tokens_per_minute)

    def reserve(self, tokens: int = 0) -> float:
        """Reserves a slot for one request of ``tokens`` tokens; returns the seconds to wait before sending it.

        Synchronous and lock-free: asyncio callers run one at a time, so reservations never interleave.
        """
        now = self._clock()
        floor = now - self.burst_s
        start = max(now, self._hold_until)
        if self.requests_per_minute:
            self._next_request = max(self._next_request, floor)
            start = max(start, self._next_request)
        if self.tokens_per_minute and tokens:
            self._next_token = max(self._next_token, floor)
            start = max(start, self._next_token)
        if self.requests_per_minute:
            self._next_request = max(self._next_request, start - self.burst_s) + 60.0 / self.requests_per_minute
        if self.tokens_per_minute and tokens:
            self._next_token = max(self._next_token, start - self.burst_s) + tokens * 60.0 / self.tokens_per_minute
        return max(0.0, start - now)

    async def acquire(self, tokens: int = 0) -> float:
        """Waits for a slot for one request of ``tokens`` tokens; returns the seconds waited."""
        delay = self.reserve(tokens)
        if delay > 0:
            self.waited_s += delay
            await asyncio.sleep(delay)
        return delay

    def adjust(self, token_delta: int) -> None:
        """Corrects the token budget once a request's real usage is known (positive: it used more)."""
        if self.tokens_per_minute and token_delta:
            floor = self._clock() - self.burst_s
            self._next_token = max(floor, self._next_token + token_delta * 60.0 / self.tokens_per_minute)

    def hold(self, seconds: float) -> None:
        """Sends nothing for ``seconds`` (a server's ``Retry-After``): every caller waits, not only the one told."""
        if seconds > 0:
            self._hold_until = max(self._hold_until, self._clock() + seconds)
