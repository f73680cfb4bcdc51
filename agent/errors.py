"""The errors a user can cause or meet, each with a message that says what to do.

    DatagenError                 exit 2 unless said otherwise; the CLI prints str(error) on one line
    ├── InputError               a file or flag a person wrote is wrong (plan, requirements, answers)
    ├── ConfigError              the environment is wrong (missing API key, unwritable folder)
    ├── ProviderError            an LLM call failed; .retryable says whether trying again can help
    ├── ResumeError              the ledger and the plan disagree (renamed dimension, lowered quota)
    ├── LockError                another datagen process is working on the same run
    ├── LedgerError              the ledger file is damaged, empty, a folder, or from a newer datagen
    ├── BudgetExceeded           --max-cost reached (exit 3: the run stopped cleanly, resumable)
    ├── NoProgress               the progress brake: calls keep accepting nothing (exit 5, resumable)
    └── Interrupted              stopped by SIGINT (exit 130) or SIGTERM (exit 143); resumable
"""

from __future__ import annotations

import errno


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


class LedgerError(DatagenError):
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


def storage_problem(e: BaseException) -> str | None:
    """One line with a next step for a full disk or a damaged ledger met mid-command; None for anything else."""
    import sqlite3  # here, not at the top: every command imports this module, few open a ledger

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {e.filename}" if e.filename else ""
        return (f"the disk is full ({e.strerror or 'no space left'}{where}); free some space and run the same "
                f"command again (everything already accepted is kept in the ledger)")
    if isinstance(e, sqlite3.OperationalError) and "full" in str(e):
        return (f"the disk is full (SQLite: {e}); free some space and run the same command again "
                f"(everything already accepted is kept in the ledger)")
    if type(e) is sqlite3.DatabaseError:  # "malformed", "not a database"; not a subclass (a bug's IntegrityError)
        return (f"the run's ledger is damaged (SQLite: {e}); move ledger.sqlite aside to keep it, or pass "
                f"--restart to start the run over")
    return None
