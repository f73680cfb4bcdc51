"""HTTP faults as ProviderErrors, the same for every provider: which statuses are worth retrying, how long
the server asked us to wait, an account out of credit (fatal at once), and secrets kept out of messages."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from agent.errors import ProviderError

RETRYABLE_STATUS = {408: "timeout", 409: "conflict", 429: "rate_limit", 529: "overloaded"}


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI, Anthropic) or `retry-after` (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


QUOTA = re.compile(r"insufficient_quota|exceeded your current quota|billing|credit balance|payment required", re.I)


def redact(text: str, secret: str | list[str] | None) -> str:
    for s in ([secret] if isinstance(secret, str) else secret or []):
        if s:
            text = text.replace(s, "***")
    return text


def status_error(status: int, detail: str, headers: Mapping[str, str], *, provider: str, key_hint: str,
                 secret: str | list[str] | None) -> ProviderError:
    """The ProviderError for an HTTP error status. `detail` is redacted of `secret` and shortened."""
    detail = redact(detail, secret)[:300]
    if status in (402, 429, 400, 403) and QUOTA.search(detail):
        # out of credit: no retry can help and every retry is wasted time (a rate limit says "rate limit")
        return ProviderError(f"{provider} says the account is out of quota or credit (HTTP {status}): {detail}; "
                             f"add credit or raise the spending limit on the provider's billing page, then re-run",
                             retryable=False, kind="quota")
    kind = RETRYABLE_STATUS.get(status) or ("server" if status >= 500 else None)
    if kind:
        return ProviderError(f"{provider} returned HTTP {status} ({kind}): {detail}", retryable=True, kind=kind,
                             retry_after=retry_after_s(headers))
    if status in (401, 403):
        # The server's own message may echo the key: leave it out entirely.
        return ProviderError(f"{provider} rejected the credentials (HTTP {status}): check {key_hint}",
                             retryable=False, kind="auth")
    return ProviderError(f"{provider} refused the request (HTTP {status}): {detail}", retryable=False,
                         kind="bad_request")
