"""Client-side pacing and retry timing for remote teachers.

`Pacer` spaces requests evenly so a requests-per-minute and a tokens-per-minute limit are never exceeded, even over
short windows (providers often enforce a per-minute limit per second or so): it keeps no burst allowance, so a
limit below the endpoint's capacity is reached at `SAFETY` of its value with no 429 caused by herd.
`retry_delay` is exponential backoff with full jitter that never retries earlier than a server's Retry-After;
`parse_retry_after` reads both forms of that header (seconds, or an HTTP date).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time

from herd.teacher.base import Request

# Aim a little under the limit: clocks on both ends jitter, and a request that arrives a few ms early is a 429.
SAFETY = 0.98


class Pacer:
    """Hands out send times at most `rpm` requests and `tpm` tokens per minute apart (0 = no limit)."""

    def __init__(self, rpm: int = 0, tpm: int = 0, safety: float = SAFETY) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.safety = safety
        self._next = 0.0
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return self.rpm > 0 or self.tpm > 0

    def gap(self, tokens: int) -> float:
        """Seconds to leave after a request of `tokens` before the next one may go."""
        gaps = [0.0]
        if self.rpm > 0:
            gaps.append(60.0 / (self.rpm * self.safety))
        if self.tpm > 0:
            gaps.append(60.0 * tokens / (self.tpm * self.safety))
        return max(gaps)

    async def wait(self, tokens: int) -> None:
        """Return when this request may be sent. The lock keeps waiters in order and the spacing exact."""
        if not self.active:
            return
        loop = asyncio.get_running_loop()
        async with self._lock:
            now = loop.time()
            # Slots follow a fixed grid, so wake-ups that come a little late do not add up to a slower rate; a
            # request that comes after its slot has passed starts a new grid (no catching up in a burst).
            slot = max(now, self._next)
            if slot > now:
                await asyncio.sleep(slot - now)
            self._next = slot + self.gap(tokens)


def estimate_tokens(request: Request) -> int:
    """What a request may cost against a TPM limit: prompt tokens (about 4 characters each) plus max_tokens."""
    overhead = 4 * len(request.messages)  # role and separators, as chat templates add them
    return request.prompt_chars() // 4 + overhead + request.max_tokens


def retry_delay(attempt: int, base_s: float, max_s: float, retry_after: float | None = None,
                rng: random.Random | None = None) -> float:
    """Seconds to wait after failed try number `attempt` (1-based): full jitter, never before Retry-After."""
    ceiling = min(max_s, base_s * (2 ** (attempt - 1)))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
