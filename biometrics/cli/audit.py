"""``retauth audit verify|list``: check and read the HMAC-chained audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from biometrics.cli.common import Exit, emit, errors_to_exit_codes, line
from biometrics.cli.db import DbOpt, JsonOpt, KeyFileOpt, open_store

audit_app = typer.Typer(help="Verify or list the tamper-evident audit log.", no_args_is_help=True)


ExpectHeadOpt = Annotated[
    str | None,
    typer.Option(
        "--expect-head",
        metavar="SEQ:MAC",
        help="A head printed earlier (kept outside the store); the log must still hold it.",
    ),
]


@audit_app.command("verify")
def verify(
    expect_head: ExpectHeadOpt = None,
    db: DbOpt = None,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the chain and every user's state: exit 0 if intact, 3 if anything was edited,
    removed, reordered or restored from an older copy.

    Keep the printed head (SEQ:MAC) elsewhere and pass it back with --expect-head: that is
    what shows a log truncated to an older state together with its head.
    """
    with errors_to_exit_codes(as_json=as_json):
        with open_store(db, key_file, create=False) as store:
            report = store.audit_verify(expect_head)
        result = {
            "ok": report.ok,
            "events": report.count,
            "head_seq": report.head_seq,
            "head_mac": report.head_mac,
            "problems": report.problems,
        }
        if report.ok:
            human = line(
                "audit log intact: {n} events, head {seq}:{mac}",
                n=report.count,
                seq=report.head_seq,
                mac=report.head_mac,
            )
        else:
            human = line("audit log BROKEN: {problems}", problems="; ".join(report.problems))
        emit(result, human, as_json=as_json, code=Exit.OK if report.ok else Exit.INTERNAL)


@audit_app.command("list")
def list_events(
    limit: Annotated[int | None, typer.Option(min=1, help="Only the newest N events.")] = None,
    db: DbOpt = None,
    key_file: KeyFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print audit events, oldest first (pseudonymous: no user ids, no biometric data)."""
    with errors_to_exit_codes(as_json=as_json):
        with open_store(db, key_file, create=False) as store:
            events = store.audit_events(limit)
        lines = [  # every field comes from the database: inserted as plain printable text
            line(
                "{seq} {time} {event} {subject} {decision} {score} {detail}",
                seq=e["seq"],
                time=e["time"],
                event=e["event"],
                subject=(e["subject"] or "-")[:12],
                decision=e["decision"] or "-",
                score="-" if e["score"] is None else f"{e['score']:.3f}",
                detail=e["detail"] or "",
            )
            for e in events
        ]
        emit(
            {"ok": True, "events": events},
            Text("\n").join(lines) if lines else "no events",
            as_json=as_json,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
