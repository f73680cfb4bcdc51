"""The errors a user can cause or meet, each with a message that says what to do.

    DatagenError                 exit 2 unless said otherwise; the CLI prints str(error) on one line
    ├── InputError               a file or flag a person wrote is wrong (plan, requirements, answers)
    ├── ConfigError              the environment is wrong (missing API key, unwritable folder)
    ├── ProviderError            an LLM call failed; .retryable says whether trying again can help
    ├── ResumeError              the ledger and the plan disagree (renamed dimension, lowered quota)
    ├── LockError                another datagen process is working on the same run
    ├── BudgetExceeded           --max-cost reached (exit 3: the run stopped cleanly, resumable)
    ├── NoProgress               the progress brake: calls keep accepting nothing (exit 5, resumable)
    └── Interrupted              stopped by SIGINT (exit 130) or SIGTERM (exit 143); resumable
"""

from __future__ import annotations


class DatagenError(Exception):
    exit_code = 2


class InputError(DatagenError):
    pass


class ConfigError(DatagenError):
    pass


class ProviderError(DatagenError):
    """A failed provider call. `kind` names the failure for the ledger (rate_limit, server, timeout, ...)."""

    exit_code = 1

    def __init__(self, message: str, *, retryable: bool, kind: str = "error", retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.kind = kind
        self.retry_after = retry_after


class ResumeError(DatagenError):
    pass


class LockError(DatagenError):
    pass


class BudgetExceeded(DatagenError):
    exit_code = 3


class NoProgress(DatagenError):
    exit_code = 5


class Interrupted(DatagenError):
    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code
