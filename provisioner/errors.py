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


class ProvisionerError(Exception):
    """Base of every error provisioner reports to a person."""

    #: Stable machine-readable code, used in JSON output and API errors.
    code = "error"
    #: HTTP status the API maps this error to.
    http_status = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

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
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            text += "\n" + "\n".join(f"  - {p}" for p in shown)
            if more:
                text += f"\n  ... and {more} more"
        return text

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.problems:
            out["problems"] = self.problems
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

    def __init__(self, message: str, *, hint: str | None = None,
                 retry_after: int | None = None) -> None:
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
