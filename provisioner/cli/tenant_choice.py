"""``-t``: a tenant by its number in the user's list, or by its slug (REQUIREMENTS B).

    slug = choose_tenant(state, "sato", "2")      # the 2nd tenant of sato's list
    slug = choose_tenant(state, "sato", "osaka")  # a slug is taken as is
    slug = choose_tenant(state, "sato", None)     # one tenant: it; several: ask

    @cli.command()
    @tenant_option()                 # -t N|SLUG, resolved before the command runs
    @click.option("--as", "login")
    def show(tenant: str, login: str | None) -> None: ...

A user with several tenants who omits ``-t`` gets the numbered list and a
prompt (the first is the default) on a terminal; without a terminal the list
is printed with exit code 2 (a usage error), so scripts never hang. The list is
read in its own short transaction, never while waiting for the person.

The numbers are the ones ``provisioner login`` shows (the same service
function, :func:`provisioner.services.provisioning.auth.tenants_for`, numbers
them), so a number means the same tenant in every command.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from provisioner.cli.output import State
from provisioner.errors import PermissionDenied
from provisioner.numbers import parse_whole_number
from provisioner.services.provisioning import auth

F = TypeVar("F", bound=Callable[..., Any])


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def numbered(choices: list[auth.TenantChoice]) -> str:
    return "\n".join(f"  {c.number}  {c.slug}  {c.name} ({c.role})" for c in choices)


def choose_tenant(state: State, login: str | None, ref: str | None) -> str:
    """The slug of the tenant ``ref`` designates for ``login`` (see the module doc)."""
    if ref is not None and parse_whole_number(ref) is None:
        return ref  # a slug: membership is checked by the command's own actors.resolve
    if login is None:
        if ref is None:
            raise click.UsageError(
                "give the tenant: -t SLUG (or --as LOGIN to choose from "
                "your numbered list of tenants)"
            )
        raise click.UsageError(
            f"-t {ref} is a number in a user's list of tenants: give "
            "--as LOGIN too, or the tenant's slug"
        )
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
            + numbered(choices)
        )
    click.echo(f"{login}'s tenants:\n{numbered(choices)}", err=True)
    number: int = click.prompt(
        "tenant number", type=click.IntRange(1, len(choices)), default=1, err=True
    )
    return choices[number - 1].slug


def tenant_option(
    *,
    param: str = "tenant",
    login_param: str = "login",
    help: str = "the tenant: its number in your list (see 'provisioner login'), or its slug",
) -> Callable[[F], F]:
    """``-t/--tenant N|SLUG`` for a command that also takes ``--as LOGIN``.

    The command receives the tenant's slug in ``param``: a number is looked up in
    the user's list; an omitted ``-t`` is asked for (or exit 2 with the list).
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def resolved(*args: Any, **kwargs: Any) -> Any:
            state = click.get_current_context().find_object(State)
            assert state is not None
            kwargs[param] = choose_tenant(state, kwargs.get(login_param), kwargs.get(param))
            return command(*args, **kwargs)

        option = click.option("-t", "--tenant", param, metavar="N|SLUG", help=help)
        return option(resolved)  # type: ignore[return-value]

    return decorate
