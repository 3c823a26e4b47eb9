"""``retauth users list|delete|revoke|unlock``: manage enrolled identities (no biometrics shown)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from biometrics.cli.common import emit, errors_to_exit_codes, line
from biometrics.cli.db import DbOpt, JsonOpt, KeyFileOpt, open_store

users_app = typer.Typer(help="List, delete, revoke or unlock enrolled users.", no_args_is_help=True)

UserOpt = Annotated[str, typer.Option("--user", "-u", help="User id.")]


@users_app.command("list")
def list_users(db: DbOpt = None, key_file: KeyFileOpt = None, as_json: JsonOpt = False) -> None:
    """List enrolled users: id, creation time, number of templates, status."""
    with errors_to_exit_codes(as_json=as_json):
        with open_store(db, key_file, create=False) as store:
            users = store.users()
        lines = [
            line(
                "{user}  {n} template(s)  created {created}  {status}"
                + ("  LOCKED" if u["locked"] else ""),
                user=u["user"],
                n=u["n_templates"],
                created=u["created"],
                status=u["status"],
            )
            for u in users
        ]
        emit(
            {"ok": True, "users": users},
            Text("\n").join(lines) if lines else "no users enrolled",
            as_json=as_json,
        )


def _act(
    verb: str, action: str, user: str, db: str | None, key_file: Path | None, as_json: bool
) -> None:
    with errors_to_exit_codes(as_json=as_json):
        with open_store(db, key_file, create=False) as store:
            getattr(store, action)(user)
        emit(
            {"ok": True, "user": user, "action": action},
            line("{verb} {user}", verb=verb, user=user),
            as_json=as_json,
        )


@users_app.command("delete")
def delete(
    user: UserOpt, db: DbOpt = None, key_file: KeyFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Remove a user and all of their templates for good."""
    _act("deleted", "delete", user, db, key_file, as_json)


@users_app.command("revoke")
def revoke(
    user: UserOpt, db: DbOpt = None, key_file: KeyFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a user's templates and refuse the id until it is enrolled again (renewal)."""
    _act("revoked", "revoke", user, db, key_file, as_json)


@users_app.command("unlock")
def unlock(
    user: UserOpt, db: DbOpt = None, key_file: KeyFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Clear a lockout after too many failed verifications."""
    _act("unlocked", "unlock", user, db, key_file, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
