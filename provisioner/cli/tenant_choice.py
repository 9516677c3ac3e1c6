"""``-t``: a tenant by its number in the user's list, or by its slug (REQUIREMENTS B).

    slug = choose_tenant(state, "sato", "2")      # the 2nd tenant of sato's list
    slug = choose_tenant(state, "sato", "osaka")  # a slug is taken as is
    slug = choose_tenant(state, "sato", None)     # one tenant: it; several: ask

A user with several tenants who omits ``-t`` gets the numbered list and a
prompt (the first is the default) on a terminal; without a terminal the list
is printed with exit code 2 (a usage error), so scripts never hang. The list is
read in its own short transaction, never while waiting for the person.
"""

from __future__ import annotations

import sys

import click

from provisioner.cli.output import State
from provisioner.errors import PermissionDenied
from provisioner.services.provisioning import auth


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def numbered(choices: list[auth.TenantChoice]) -> str:
    return "\n".join(f"  {c.number}  {c.slug}  {c.name} ({c.role})" for c in choices)


def choose_tenant(state: State, login: str, ref: str | None) -> str:
    """The slug of the tenant ``ref`` designates for ``login`` (see the module doc)."""
    if ref is not None and not ref.isdigit():
        return ref  # a slug: membership is checked by the command's own actors.resolve
    with state.transaction() as ctx:
        choices = auth.tenants_for_login(ctx, login)
    if not choices:
        raise PermissionDenied(f"user {login!r} has no active tenant")
    if ref is not None:
        return auth.pick(choices, ref).slug
    if len(choices) == 1:
        return choices[0].slug
    if not is_interactive():
        raise click.UsageError(
            f"{login} has {len(choices)} tenants; choose one with -t NUMBER or -t SLUG:\n"
            + numbered(choices))
    click.echo(f"{login}'s tenants:\n{numbered(choices)}", err=True)
    number: int = click.prompt("tenant number", type=click.IntRange(1, len(choices)),
                               default=1, err=True)
    return choices[number - 1].slug
