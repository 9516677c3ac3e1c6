"""The one exception hierarchy of provisioner.

Every failure the product reports to a person is a :class:`ProvisionerError`.
Interfaces map the class once to an exit code (CLI) or HTTP status (API); the
message is written for the person who has to fix the problem: what is wrong
and, where there is one, how to fix it.

    >>> try:
    ...     raise KeyRejected("copy key expired at 2026-11-24 09:00 UTC", hint="ask for a new key")
    ... except ProvisionerError as exc:
    ...     print(exc.diagnostics())
    copy key expired at 2026-11-24 09:00 UTC (ask for a new key)
"""

from __future__ import annotations

#: The longest message an error carries (a longer one is cut, saying so).
MAX_MESSAGE = 2000
#: Problems listed in an error body (the rest are counted), and the length of each.
MAX_PROBLEMS = 20
MAX_PROBLEM = 300


def excerpt(value: object, limit: int = 64) -> str:
    r"""``repr(value)``, bounded: attacker-supplied text is quoted, never echoed in full.

    Non-text values are shown by their ``repr``; anything longer than ``limit``
    characters is cut with an ellipsis and its length. Lone surrogates and
    control characters come out escaped, so the result is always printable.

        >>> excerpt("x" * 100_000)
        "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' (100,000 characters)"
        >>> excerpt("\ud800")
        "'\\ud800'"
    """
    if isinstance(value, str) and len(value) > limit:
        shown = repr(value[:limit])
        return f"{shown[:-1]}…{shown[-1]} ({len(value):,} characters)"
    text = repr(value)
    if len(text) > limit + 2:
        return text[:limit] + f"… ({len(text):,} characters)"
    return text


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… (cut: {len(text):,} characters in all)"


class ProvisionerError(Exception):
    """Base of every error provisioner reports to a person."""

    #: Stable machine-readable code, used in JSON output and API errors.
    code = "error"
    #: HTTP status the API maps this error to.
    http_status = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = _bounded(message, MAX_MESSAGE)
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is None else _bounded(hint, MAX_MESSAGE)

    def diagnostics(self) -> str:
        """The message and, when there is one, how to fix it."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class NotFound(ProvisionerError):
    code = "not_found"
    http_status = 404


class AlreadyExists(ProvisionerError):
    code = "already_exists"
    http_status = 409


class PermissionDenied(ProvisionerError):
    code = "permission_denied"
    http_status = 403


class ValidationFailed(ProvisionerError):
    """Input that does not match the contract (a document, a file, an option)."""

    code = "validation_failed"
    http_status = 422

    def __init__(
        self, message: str, *, problems: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def diagnostics(self) -> str:
        text = super().diagnostics()
        if self.problems:
            shown = [_bounded(p, MAX_PROBLEM) for p in self.problems[:MAX_PROBLEMS]]
            more = len(self.problems) - len(shown)
            text += "\n" + "\n".join(f"  - {p}" for p in shown)
            if more:
                text += f"\n  ... and {more} more"
        return text

    def to_dict(self) -> dict[str, object]:
        """The body of a refusal: at most :data:`MAX_PROBLEMS` problems, each bounded,
        and ``problems_total`` when there are more (a 1,000,000-column header makes
        a body of a few KB, not 100 MB)."""
        out = super().to_dict()
        if self.problems:
            out["problems"] = [_bounded(p, MAX_PROBLEM) for p in self.problems[:MAX_PROBLEMS]]
            if len(self.problems) > MAX_PROBLEMS:
                out["problems_total"] = len(self.problems)
        return out


class BundleRejected(ProvisionerError):
    """A bundle failed verification or strict parsing. Nothing was stored."""

    code = "bundle_rejected"
    http_status = 422


class KeyRejected(ProvisionerError):
    """A copy key is malformed, unknown, expired, used, revoked or for another tenant."""

    code = "key_rejected"
    http_status = 403


class Unauthenticated(ProvisionerError):
    """No session, or the session has ended (expired, logged out, password changed)."""

    code = "unauthenticated"
    http_status = 401


class RateLimited(ProvisionerError):
    """Too many attempts; ``retry_after`` is the number of seconds to wait, when known."""

    code = "rate_limited"
    http_status = 429

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class PlanConflict(ProvisionerError):
    """The target changed since the plan was made, or a state transition is not allowed."""

    code = "plan_conflict"
    http_status = 409


class DataInUse(ValidationFailed):
    """A configuration change would strand values that records still hold."""

    code = "data_in_use"
    http_status = 409


class UnresolvedConflicts(ValidationFailed):
    """A three-way upgrade has conflicts no ``--keep``/``--take``/``--prefer`` resolved."""

    code = "unresolved_conflicts"
    http_status = 409


class TransferRefused(ProvisionerError):
    """A tenant may not take part in a copy (plan, sandbox, integrations...)."""

    code = "transfer_refused"
    http_status = 403


class QuotaExceeded(ProvisionerError):
    code = "quota_exceeded"
    http_status = 413


class ConfigurationError(ProvisionerError):
    """The deployment itself is misconfigured (database URL, master key...)."""

    code = "configuration_error"
    http_status = 500


class DatabaseError(ProvisionerError):
    """The database could not complete the request (a cause not recognised more precisely).

    Its subclasses name the cause. ``retry_after`` (seconds) is set where trying
    again later helps; the API sends it as ``Retry-After``.
    """

    code = "database_error"
    http_status = 503
    retry_after: int | None = None


class DatabaseUnavailable(DatabaseError):
    """The database server cannot be reached (down, restarting, network, refused)."""

    code = "database_unavailable"
    retry_after = 5


class DatabaseBusy(DatabaseError):
    """No connection is free: this process's pool waited out its timeout, or the server
    refused a new connection (``too many clients``)."""

    code = "database_busy"
    retry_after = 2


class DatabaseLocked(DatabaseError):
    """SQLite: another process held the write lock past the busy timeout."""

    code = "database_locked"
    retry_after = 2


class StorageFull(DatabaseError):
    """The database cannot write: its disk (or PostgreSQL's) is full. Retrying does not
    help until space is added."""

    code = "storage_full"
