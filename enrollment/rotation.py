"""Key rotation and retirement: re-seal every record under the newest key, then drop old ones.

``rotate`` works like ``MultiFernet.rotate`` over the whole store, in ONE write transaction:
either every record moves to the new key or none does. With a key file the new key is
generated here; its id is first recorded in ``store_meta`` as the rotation target and only
then added to the key file, so a process killed at any point is resumed by running
``retauth keys rotate`` again, which finishes with the *same* key instead of adding another.
With ``RETAUTH_KEY``/passphrases the operator supplies the new key first in the list.
Creation times inside the records are preserved. ``retire`` removes a key only when no record
uses it and it is not the primary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from enrollment.db import read_session, write_session
from enrollment.errors import InvalidRecord, KeyConfigError, KeyInUse
from enrollment.keys import generate_key
from enrollment.models import Meta, TemplateRecord, User
from enrollment.record import context, key_id_of, reseal
from enrollment.store import PRIMARY_META, SECRET_META, TemplateStore

TARGET_META = "rotation_target"
_BATCH = 200

Progress = Callable[[int, int], None]


def _target(store: TemplateStore) -> tuple[bytes, bool]:
    """The key to rotate to, and whether an interrupted rotation is being resumed."""
    with read_session(store.engine) as session:
        pending = session.get(Meta, TARGET_META)
        pending_id = bytes(pending.value) if pending else None
    if pending_id is not None and store.keyring.get(pending_id) is not None:
        return pending_id, True
    if not store.source.can_generate:
        return store.keyring.primary.id, False
    key = generate_key()
    with write_session(store.engine) as session:
        session.merge(Meta(name=TARGET_META, value=key.id))
    store.source.add_key(key)
    store.reload_keys()
    return key.id, False


def rotate(store: TemplateStore, progress: Progress | None = None) -> dict[str, Any]:
    """Re-seal every record not under the newest key; return what was done."""
    target, resumed = _target(store)
    if store.keyring.primary.id != target:
        raise KeyConfigError(
            f"the rotation target {target.hex()} is not the newest configured key; "
            "put it first in the key source and run again"
        )
    hex_id = target.hex()
    with write_session(store.engine) as session:
        template_ids = session.scalars(
            select(TemplateRecord.id).where(TemplateRecord.key_id != hex_id)
        ).all()
        users = session.scalars(select(User).where(User.name_key_id != hex_id)).all()
        usage = store.key_usage(session)
        corrupt: list[int] = []
        total, done = sum(n for kid, n in usage.items() if kid != hex_id), 0
        for user in users:
            user.name_record = reseal(
                store.keyring, user.name_record, context("user-name", user.pseudonym)
            )
            user.name_key_id = hex_id
            done += 1
        for start in range(0, len(template_ids), _BATCH):
            batch = session.scalars(
                select(TemplateRecord).where(
                    TemplateRecord.id.in_(template_ids[start : start + _BATCH])
                )
            ).all()
            for template in batch:
                try:
                    done += _reseal_template(store, template)
                except InvalidRecord:
                    corrupt.append(template.id)  # stays under its key, reported below
                    continue
                template.key_id = hex_id
            session.flush()
            if progress:
                progress(done, total)
        secret = session.get(Meta, SECRET_META)
        if key_id_of(secret.value) != hex_id:
            secret.value = reseal(store.keyring, secret.value, context("deployment-secret"))
            done += 1
        session.merge(Meta(name=PRIMARY_META, value=target))
        pending = session.get(Meta, TARGET_META)
        if pending is not None:
            session.delete(pending)
        detail = f"{done} records to key {hex_id}" + (
            f", {len(corrupt)} corrupt" if corrupt else ""
        )
        store.append_audit(session, "rotate", detail=detail)
        store.bump_revision(session)
    return {"key_id": hex_id, "reencrypted": done, "resumed": resumed, "corrupt_rows": corrupt}


def _reseal_template(store: TemplateStore, template: TemplateRecord) -> int:
    """Re-seal a capture's template and pre-filter records; how many records that was.

    Both are opened before either is replaced, so a corrupt one leaves the row untouched.
    """
    owner = template.user
    ctx = context("template", owner.pseudonym, owner.reference, template.uid)
    record = reseal(store.keyring, template.record, ctx)
    features = template.features
    if features is not None:
        fctx = context("features", owner.pseudonym, owner.reference, template.uid)
        features = reseal(store.keyring, features, fctx)
    template.record, template.features = record, features
    return 1 if features is None else 2


def retire(store: TemplateStore, key_id: str) -> dict[str, Any]:
    """Remove an unused, non-primary key from its source (or say it may be removed)."""
    kid = key_id.lower()
    if store.keyring.primary.id.hex() == kid:
        raise KeyInUse(f"key {kid} is the primary key; rotate to a new key before retiring it")
    if store.keyring.get(bytes.fromhex(kid) if _is_hex_id(kid) else b"") is None:
        raise KeyInUse(f"key {kid} is not among the configured keys")
    with write_session(store.engine) as session:
        used = store.key_usage(session)[kid]
        if used:
            raise KeyInUse(f"key {kid} still protects {used} records; run 'retauth keys rotate'")
        removed = store.source.remove_key(bytes.fromhex(kid))
        store.append_audit(session, "retire", detail=f"key {kid}")
    if removed:
        store.reload_keys()
    return {"key_id": kid, "removed_from_source": removed, "source": store.source.name}


def _is_hex_id(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)
