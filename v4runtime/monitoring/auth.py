"""Bearer tokens (read and write) with constant-time comparison, and per-token rate limits."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Sequence
from typing import Literal

from v4runtime.monitoring.api_errors import APIError

Scope = Literal["read", "write"]


class TokenBucket:
    """``rate`` requests per second with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Authenticator:
    """Checks ``Authorization: Bearer`` headers and applies rate limits.

    Auth is on when any token is configured. Write tokens may also read. Without tokens every caller is
    let in and rate-limited by client address.

    Raises:
        ValueError: ``burst`` is below 1 (the settings refuse it first, naming the setting).
    """

    def __init__(
        self,
        read_tokens: Sequence[str],
        write_tokens: Sequence[str],
        *,
        rate_per_s: float,
        burst: float | None = None,
    ) -> None:
        self._read = [t.encode() for t in read_tokens if t]
        self._write = [t.encode() for t in write_tokens if t]
        self.enabled = bool(self._read or self._write)
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(rate_per_s, 1.0)
        if not self.burst >= 1:  # a bucket that never holds a whole token would refuse every request
            raise ValueError(f"rate limit burst must be at least 1 (each request takes one token), got {self.burst:g}")
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _matches(candidate: bytes, tokens: list[bytes]) -> bool:
        # Compare against every token, without stopping early, so timing reveals nothing.
        found = False
        for token in tokens:
            found |= hmac.compare_digest(candidate, token)
        return found

    def authorize(self, header: str | None, scope: Scope, client: str) -> str:
        """Check the header for ``scope`` and the caller's rate; returns the rate-limit key.

        Raises:
            APIError: 401 without a valid token, 403 when a read token tries to write, 429 over the rate.
        """
        key = f"addr:{client}"
        if self.enabled:
            token = _bearer(header)
            if token is None:
                raise APIError(
                    401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
                )
            is_write = self._matches(token, self._write)
            is_read = is_write or self._matches(token, self._read)
            if not is_read:
                raise APIError(401, "unauthorized", "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
            if scope == "write" and not is_write:
                raise APIError(403, "forbidden", "this token may read but not write")
            key = "token:" + hashlib.sha256(token).hexdigest()[:16]
        self._limit(key)
        return key

    def _limit(self, key: str) -> None:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) > 10_000:  # forget idle callers rather than grow without bound
                    self._buckets.clear()
                bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst)
            wait = bucket.take()
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise APIError(
                429,
                "rate_limited",
                f"rate limit of {self.rate_per_s:g} requests/s exceeded",
                details={"retry_after_s": retry},
                headers={"Retry-After": str(retry)},
            )


def _bearer(header: str | None) -> bytes | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip().encode()
