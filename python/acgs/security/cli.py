"""``acgs keys create|list|revoke``: API keys in the key store the services read
(``ACGS_AUTH_KEY_STORE``, or SQLite under ``ACGS_DATA_DIR``); and :func:`admin_command`, which
makes an admin command ask for an operator the directory vouches for when operator
authentication is on (``ACGS_OPERATOR_AUTH=ldap``, or ``ACGS_LDAP_URL`` set)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from acgs.security.keys import ApiKeyError, KeyStore, create_key, open_key_store, revoke_key
from acgs.security.principal import ADMIN, ROLES
from acgs.security.settings import SecuritySettings

F = TypeVar("F", bound=Callable[..., Any])

OPERATOR_ENV = "ACGS_OPERATOR"
OPERATOR_PASSWORD_FILE_ENV = "ACGS_OPERATOR_PASSWORD_FILE"
log = logging.getLogger("acgs.operator")

if TYPE_CHECKING:  # acgs.security.ldap (and ldap3) load only when operator authentication is on
    from acgs.security.ldap import Operator


class OperatorRefused(click.ClickException):
    """The directory did not vouch for the operator, or not with the role the command needs
    (exit status 1; a missing or malformed setting is a usage error, status 2)."""

    exit_code = 1


def authorise_operator(name: str | None, role: str = ADMIN) -> Operator | None:
    """The operator running this command, authenticated by the directory and holding ``role``;
    None when operator authentication is off. The password comes from
    ``ACGS_OPERATOR_PASSWORD_FILE`` (scripts) or a hidden prompt."""
    mode = os.environ.get("ACGS_OPERATOR_AUTH", "").strip().lower()
    if mode == "none" or (not mode and not os.environ.get("ACGS_LDAP_URL", "").strip()):
        if name:
            click.echo(f"acgs: operator authentication is off: {name!r} was not checked (ACGS_OPERATOR_AUTH)", err=True)
        return None
    try:
        from acgs.security import ldap
    except ImportError as exc:
        raise click.UsageError(f"operator authentication needs the ldap3 package ({exc})") from None

    command = click.get_current_context().command_path
    try:
        mode = ldap.operator_auth(os.environ)  # refuses a mode it does not know
        directory = ldap.Directory(ldap.LdapSettings.from_env())
    except ldap.LdapConfigError as exc:
        raise click.UsageError(f"operator authentication: {exc.message}") from None
    if not name:
        raise click.UsageError(f"operator authentication is on ({mode}): give --operator NAME or set {OPERATOR_ENV}")
    password_file = os.environ.get(OPERATOR_PASSWORD_FILE_ENV, "").strip()
    try:
        if password_file:
            password = ldap.read_secret_file(Path(password_file), f"the operator's password ({OPERATOR_PASSWORD_FILE_ENV})")
        else:
            password = click.prompt(f"LDAP password for {name}", hide_input=True, default="", show_default=False, err=True)
        operator = directory.authenticate(name, password)
    except ldap.LdapConfigError as exc:
        raise click.UsageError(f"operator authentication: {exc.message}") from None
    except ldap.LdapError as exc:
        log.warning("operator %r refused for `%s`: %s: %s", name, command, exc.code, exc.message)
        raise OperatorRefused(f"operator refused ({exc.code}): {exc.message}") from None
    if not operator.has(role):
        held = ", ".join(sorted(operator.roles))
        log.warning("operator %s refused for `%s`: roles %s, needs %s", operator.by, command, held, role)
        raise OperatorRefused(
            f"operator refused (operator_role): {name!r} ({operator.subject}) holds {held} through the directory's groups;"
            f" `{command}` needs {role}"
        )
    log.info("operator %s authorised as %s for `%s`", operator.by, role, command)
    click.echo(f"acgs: operator {name} authorised as {role} by {operator.provider} ({operator.subject})", err=True)
    return operator


def admin_command(f: F) -> F:
    """Adds ``--operator`` to a command that changes what the services trust, and runs it only
    for an operator :func:`authorise_operator` accepts as admin (when operator authentication is
    on). The operator is logged (``acgs.operator``) with the provider and their directory DN."""

    @functools.wraps(f)
    def command(*args: Any, operator_name: str | None, **kwargs: Any) -> Any:
        operator = authorise_operator(operator_name, ADMIN)
        if operator is None:
            return f(*args, **kwargs)
        path = click.get_current_context().command_path
        try:
            result = f(*args, **kwargs)
        except BaseException:
            log.warning("`%s` by operator %s did not complete", path, operator.by)
            raise
        log.info("`%s` done by operator %s", path, operator.by)
        return result

    option = click.option(
        "--operator",
        "operator_name",
        envvar=OPERATOR_ENV,
        metavar="NAME",
        help=f"Your directory user name when operator authentication is on (default: ${OPERATOR_ENV}); "
        f"the password is prompted for, or read from ${OPERATOR_PASSWORD_FILE_ENV}.",
    )
    return cast(F, option(command))


def _store(store_url: str | None) -> KeyStore:
    """``--store``, else the key store of the configuration (``acgs --config FILE`` or
    ``ACGS_CONFIG``, then ``ACGS_*`` variables), else SQLite under the data directory."""
    if store_url:
        return open_key_store(store_url)
    config_file = click.get_current_context().find_root().params.get("config_file")
    try:
        from acgs.config import load_config

        settings: SecuritySettings = load_config(config_file).security
    except ImportError:
        settings = SecuritySettings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return open_key_store(settings.resolved_key_store())


_STORE = click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="sqlite:///path or postgresql://... (default: ACGS_AUTH_KEY_STORE, else keys.sqlite3 under ACGS_DATA_DIR)",
)


@click.group("keys")
def keys() -> None:
    """Manage the API keys the services accept."""


@keys.command("create")
@admin_command
@click.option("--name", required=True, help="The principal the key stands for (an agent's or a person's name).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="A role of the key; repeat for several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its token as JSON.")
@_STORE
def create(name: str, roles: tuple[str, ...], as_json: bool, store_url: str | None) -> None:
    """Create a key and print its token: it is shown this once and stored only as a hash."""
    try:
        key, token = asyncio.run(create_key(_store(store_url), name, roles))
    except ApiKeyError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps({**key.public(), "token": token}))
        return
    click.echo(f"created key {key.id} for {key.name} (roles: {', '.join(sorted(key.roles))})")
    click.echo("token (shown once, store it now):")
    click.echo(token)


@keys.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_STORE
def list_keys(show_all: bool, as_json: bool, store_url: str | None) -> None:
    """List keys (never their tokens)."""
    try:
        found = asyncio.run(_store(store_url).all())
    except ApiKeyError as exc:
        raise click.ClickException(exc.message) from None
    shown = [k for k in found if show_all or k.active]
    if as_json:
        for key in shown:
            click.echo(json.dumps(key.public()))
        return
    if not shown:
        click.echo("no keys")
        return
    rows = [("ID", "NAME", "ROLES", "CREATED", "REVOKED")]
    for key in shown:
        p = key.public()
        rows.append((p["id"], p["name"], ",".join(p["roles"]), p["created_at"], p["revoked_at"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@keys.command("revoke")
@admin_command
@click.argument("key_id")
@_STORE
def revoke(key_id: str, store_url: str | None) -> None:
    """Revoke a key by id. Services refuse it within ACGS_AUTH_KEY_REFRESH seconds."""
    try:
        key = asyncio.run(revoke_key(_store(store_url), key_id))
    except ApiKeyError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked key {key.id} ({key.name})")
