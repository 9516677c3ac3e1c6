"""Who may take part in a configuration copy (REQUIREMENTS A, "Restrictions").

* plans: standard, professional, enterprise, ultimate, trial, developer may
  send and receive; ``light`` may not;
* a sandbox can use the feature not at all: it neither sends nor receives;
* a tenant with active integrations may send but must disable them to receive.
"""

from __future__ import annotations

from provisioner.db.models import Tenant
from provisioner.errors import TransferRefused

PLANS = ("light", "standard", "professional", "enterprise", "ultimate", "trial", "developer")
COPY_PLANS = frozenset(PLANS) - {"light"}


def _require_plan(tenant: Tenant, role: str) -> None:
    if tenant.plan not in COPY_PLANS:
        raise TransferRefused(
            f"tenant {tenant.slug!r} is on the {tenant.plan!r} plan, which cannot {role} "
            "configurations",
            hint="configuration copy needs a standard, professional, enterprise, ultimate, "
            "trial or developer plan",
        )


def require_can_send(tenant: Tenant) -> None:
    if tenant.status != "active":
        raise TransferRefused(f"tenant {tenant.slug!r} is {tenant.status}")
    _require_plan(tenant, "send")
    if tenant.is_sandbox:
        raise TransferRefused(
            f"tenant {tenant.slug!r} is a sandbox, and a sandbox cannot send configurations",
            hint="make the change in the production tenant (a sandbox is for trying them)",
        )


def require_can_receive(tenant: Tenant) -> None:
    if tenant.status != "active":
        raise TransferRefused(f"tenant {tenant.slug!r} is {tenant.status}")
    _require_plan(tenant, "receive")
    if tenant.is_sandbox:
        raise TransferRefused(
            f"tenant {tenant.slug!r} is a sandbox, and a sandbox cannot receive configurations",
            hint="a sandbox cannot use the configuration copy at all",
        )
    if tenant.integrations_active:
        raise TransferRefused(
            f"tenant {tenant.slug!r} has active integrations and cannot receive a configuration",
            hint=f"disable them first: provisioner tenant update {tenant.slug} --no-integrations",
        )
