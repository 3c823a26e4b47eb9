"""The template store: the one API that enrolment, verification and the CLI use.

Templates arrive as opaque bytes (a serialised vessel-graph template) and are stored only as
sealed records (:mod:`enrollment.record`) under the pseudonym of their user. Every method is
one transaction: an enrolment is written completely or not at all, and a refused request
(duplicate enrolment, unknown user, bad id) leaves the database byte-for-byte unchanged.

Typical use::

    store = TemplateStore.open(load_settings())
    store.enroll("alice", [template_bytes, ...])
    store.check_not_locked("alice")                  # raises UserLocked
    references = store.templates("alice")            # 1:1
    store.record_verification("alice", accepted=True, score=0.83, mode="verify")
    for name, refs in store.gallery(): ...           # 1:N
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from biometrics.errors import InputError, StoredDataError, StoreError
from biometrics.settings import Settings
from enrollment import audit
from enrollment.db import (
    current_revision,
    ensure_schema,
    make_engine,
    read_session,
    write_session,
)
from enrollment.errors import (
    InvalidRecord,
    KeyConfigError,
    UnknownUser,
    UserExists,
    UserLocked,
    UserRevoked,
)
from enrollment.ids import normalize_user_id, pseudonym
from enrollment.keys import Keyring, KeySource, key_source
from enrollment.models import Meta, Template, User
from enrollment.policy import LockoutPolicy
from enrollment.record import context, key_id_of, seal, unseal

SECRET_BYTES = 32
SECRET_META = "secret"
KDF_META = "kdf"
#: id of the key new records must be sealed with; rotation moves it, enrolment checks it
PRIMARY_META = "primary_key"
MODES = ("verify", "identify")


def _subkey(secret: bytes, label: bytes) -> bytes:
    """Independent keys for pseudonyms and the audit chain, derived from the secret."""
    return hmac.new(secret, b"retauth " + label + b" v1", hashlib.sha256).digest()


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat(timespec="seconds")


class TemplateStore:
    """Encrypted, audited template storage for one deployment (see module docstring).

    Use :meth:`open`; the constructor is for tests that need to inject parts.
    """

    def __init__(
        self,
        engine: Engine,
        keyring: Keyring,
        source: KeySource,
        secret: bytes,
        *,
        kdf: Mapping[str, Any] | None = None,
        policy: LockoutPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.keyring = keyring
        self.source = source
        self._kdf = kdf
        self.policy = policy
        self._clock = clock
        self._pseudonym_key = _subkey(secret, b"pseudonym")
        self._audit_key = _subkey(secret, b"audit")

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        policy: LockoutPolicy | None = None,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        create: bool = True,
    ) -> TemplateStore:
        """Open (creating or upgrading on first use) the store that ``settings`` point to.

        ``create=False`` is for commands that only read or change existing users: a store
        (database, tables, key file) that does not exist yet is refused, not created as a
        side effect. Raises :class:`~biometrics.errors.StoreError` (exit 3) if the database
        cannot be reached or migrated, or if the configured key cannot open it.
        """
        engine = make_engine(settings.resolved_db_url(), create=create)
        try:
            if not create and current_revision(engine) is None:
                raise StoreError("the database holds no template store (nothing enrolled yet)")
            ensure_schema(engine)
            source = key_source(settings.resolved_key_file(), environ)
            keyring, secret, kdf = _unlock(engine, source, clock, create=create)
        except BaseException:
            engine.dispose()
            raise
        return cls(
            engine,
            keyring,
            source,
            secret,
            kdf=kdf,
            policy=policy or LockoutPolicy.from_settings(settings),
            clock=clock,
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> TemplateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers --------------------------------------------------------------------------

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def _pseudonym(self, user_id: str) -> tuple[str, str]:
        name = normalize_user_id(user_id)
        return name, pseudonym(self._pseudonym_key, name)

    def append_audit(self, session: Session, event: str, **fields: Any) -> None:
        audit.append(session, self._audit_key, event, now_us=self._now_us(), **fields)

    @staticmethod
    def _find(session: Session, name: str, subject: str) -> User:
        user = session.scalar(select(User).where(User.pseudonym == subject))
        if user is None:
            raise UnknownUser(f"unknown user {name}")
        return user

    def reload_keys(self) -> None:
        """Re-read the key source (after a rotation by this or another process)."""
        self.keyring = self.source.load(self._kdf, create=False)

    def unseal(self, record: bytes, ctx: bytes) -> bytes:
        """Open a record; if another process rotated to a key we lack, reload keys once."""
        if self.keyring.get(bytes.fromhex(key_id_of(record))) is None:
            self.reload_keys()
        return unseal(self.keyring, record, ctx)

    def require_current_key(self, session: Session) -> None:
        """Inside a write transaction: refuse to seal with a key older than the store's.

        Another process may have rotated (and even retired our old primary) since this one
        loaded its keys; sealing with a stale key would leave records nobody else can open.
        The store's current key must be our primary or, mid-rotation, an older key of ours.
        """
        meta = session.get(Meta, PRIMARY_META)
        if meta is None or self.keyring.get(bytes(meta.value)) is not None:
            return
        self.reload_keys()
        if self.keyring.get(bytes(meta.value)) is None:
            raise KeyConfigError(
                f"the store was rotated to key {bytes(meta.value).hex()}, which "
                f"{self.source.name} does not hold; configure it before writing"
            )

    def _name(self, user: User) -> str:
        return self.unseal(user.name_record, context("user-name", user.pseudonym)).decode()

    def _open_templates(self, user: User) -> list[bytes]:
        return [
            self.unseal(t.record, context("template", user.pseudonym, user.reference, t.uid))
            for t in user.templates
        ]

    # --- enrolment ------------------------------------------------------------------------

    def enroll(self, user_id: str, templates: list[bytes], *, replace: bool = False) -> None:
        """Store ``templates`` for ``user_id`` atomically.

        An active user is refused with :class:`UserExists` unless ``replace``; a revoked user
        is re-enrolled without it. Each (re-)enrolment gets a fresh reference id, so records
        of an earlier enrolment can never be mixed with the new ones.
        """
        name, subject = self._pseudonym(user_id)
        if not templates or not all(isinstance(t, bytes) and t for t in templates):
            raise InputError("enrolment needs at least one non-empty template")
        now_us = self._now_us()
        with write_session(self.engine) as session:
            user = session.scalar(
                select(User).where(User.pseudonym == subject).options(selectinload(User.templates))
            )
            if user is not None and user.status == "active" and not replace:
                raise UserExists(f"user {name} is already enrolled (use --replace to re-enrol)")
            self.require_current_key(session)
            outcome = (
                "new" if user is None else ("replaced" if user.status == "active" else "renewed")
            )
            reference = uuid.uuid4().hex
            if user is None:
                user = User(
                    pseudonym=subject,
                    name_record=seal(self.keyring, name.encode(), context("user-name", subject)),
                    name_key_id=self.keyring.primary.id.hex(),
                    created_us=now_us,
                    updated_us=now_us,
                    status="active",
                    reference=reference,
                    failed_attempts=0,
                )
                session.add(user)
            else:
                user.templates.clear()
                session.flush()  # the old records go before the new ones arrive
                user.status, user.reference, user.updated_us = "active", reference, now_us
                LockoutPolicy.reset(user)
            for position, template in enumerate(templates):
                uid = uuid.uuid4().hex
                ctx = context("template", subject, user.reference, uid)
                user.templates.append(
                    Template(
                        uid=uid,
                        position=position,
                        record=seal(self.keyring, template, ctx, now=now_us // 1_000_000),
                        key_id=self.keyring.primary.id.hex(),
                        created_us=now_us,
                    )
                )
            self.append_audit(
                session,
                "enroll",
                subject=subject,
                decision=outcome,
                detail=f"{len(templates)} templates",
            )

    def templates(self, user_id: str) -> list[bytes]:
        """Decrypted templates of one user (1:1); :class:`UnknownUser`/:class:`UserRevoked`."""
        name, subject = self._pseudonym(user_id)
        with read_session(self.engine) as session:
            user = self._find(session, name, subject)
            if user.status != "active":
                raise UserRevoked(f"user {name} was revoked; re-enrol to use it again")
            return self._open_templates(user)

    def gallery(self) -> list[tuple[str, list[bytes]]]:
        """Every active user with decrypted templates, for 1:N identification."""
        with read_session(self.engine) as session:
            users = session.scalars(
                select(User)
                .where(User.status == "active")
                .options(selectinload(User.templates))
                .order_by(User.id)
            ).all()
            return [(self._name(u), self._open_templates(u)) for u in users]

    def users(self) -> list[dict[str, Any]]:
        """Enrolled users without biometric data: id, created, n_templates, status, locked."""
        now_us = self._now_us()
        with read_session(self.engine) as session:
            rows = session.execute(
                select(User, func.count(Template.id))
                .outerjoin(Template)
                .group_by(User.id)
                .order_by(User.id)
            ).all()
            return [
                {
                    "user": self._name(user),
                    "created": _iso(user.created_us),
                    "n_templates": n,
                    "status": user.status,
                    "locked": self.policy.locked_for_s(user, now_us) > 0,
                }
                for user, n in rows
            ]

    def delete(self, user_id: str) -> None:
        """Remove a user and its templates for good (SQLite overwrites the freed pages)."""
        name, subject = self._pseudonym(user_id)
        with write_session(self.engine) as session:
            session.delete(self._find(session, name, subject))
            self.append_audit(session, "delete", subject=subject)
        self._purge_wal()

    def revoke(self, user_id: str) -> None:
        """Delete a user's templates but keep the id, refused until it is re-enrolled."""
        name, subject = self._pseudonym(user_id)
        with write_session(self.engine) as session:
            user = self._find(session, name, subject)
            user.templates.clear()
            user.status, user.reference, user.updated_us = (
                "revoked",
                uuid.uuid4().hex,
                self._now_us(),
            )
            LockoutPolicy.reset(user)
            self.append_audit(session, "revoke", subject=subject)
        self._purge_wal()

    def _purge_wal(self) -> None:
        """Best effort: fold the WAL into the database so deleted records leave no copy."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:  # outside any transaction, or it cannot run
                conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- verification policy --------------------------------------------------------------

    def check_not_locked(self, user_id: str) -> None:
        """Raise :class:`UserLocked` (exit 1) while the lockout policy bars ``user_id``.

        A refused attempt is audited. Unknown ids raise :class:`UnknownUser`.
        """
        name, subject = self._pseudonym(user_id)
        now_us = self._now_us()
        with read_session(self.engine) as session:
            remaining = self.policy.locked_for_s(self._find(session, name, subject), now_us)
        if remaining <= 0:
            return
        with write_session(self.engine) as session:
            self.append_audit(session, "refused", subject=subject, decision="locked")
        raise UserLocked(
            f"user {name} is locked after {self.policy.max_failures} failed attempts; "
            f"try again in {max(1, round(remaining / 60))} min or ask an operator to unlock"
        )

    def record_verification(
        self, user_id: str | None, *, accepted: bool, score: float, mode: str
    ) -> None:
        """Audit a decision; a 1:1 (``mode="verify"``) outcome also feeds the lockout counter.

        ``user_id`` is the claimed id (1:1), the best match (1:N) or ``None`` (no match).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        decision = "accept" if accepted else "reject"
        now_us = self._now_us()
        with write_session(self.engine) as session:
            subject = None
            if user_id is not None:
                name, subject = self._pseudonym(user_id)
                user = self._find(session, name, subject)
                if mode == "verify":
                    if accepted:
                        LockoutPolicy.reset(user)
                    elif self.policy.register_failure(user, now_us):
                        self.append_audit(session, "lockout", subject=subject, decision="locked")
            self.append_audit(session, mode, subject=subject, decision=decision, score=float(score))

    def unlock(self, user_id: str) -> None:
        """Clear a lockout (operator action, audited)."""
        name, subject = self._pseudonym(user_id)
        with write_session(self.engine) as session:
            LockoutPolicy.reset(self._find(session, name, subject))
            self.append_audit(session, "unlock", subject=subject)

    # --- audit ----------------------------------------------------------------------------

    def audit_verify(self) -> audit.ChainReport:
        """Check the whole audit chain (see :func:`enrollment.audit.verify`)."""
        with read_session(self.engine) as session:
            return audit.verify(session, self._audit_key)

    def audit_events(self, limit: int | None = None) -> list[dict[str, Any]]:
        with read_session(self.engine) as session:
            return audit.events(session, limit=limit)

    # --- keys -----------------------------------------------------------------------------

    def key_usage(self, session: Session | None = None) -> Counter[str]:
        """How many sealed records each key id protects (templates, names, the secret)."""
        if session is None:
            with read_session(self.engine) as own:
                return self.key_usage(own)
        usage: Counter[str] = Counter()
        for column in (Template.key_id, User.name_key_id):
            usage.update(dict(session.execute(select(column, func.count()).group_by(column)).all()))
        secret = session.get(Meta, SECRET_META)
        if secret is not None:
            usage[key_id_of(secret.value)] += 1
        return usage


def _unlock(
    engine: Engine, source: KeySource, clock: Callable[[], float], *, create: bool = True
) -> tuple[Keyring, bytes, dict[str, Any] | None]:
    """Load the keyring and open the deployment secret, creating both for a new store
    (unless ``create`` is False: then an uninitialised store is refused)."""
    with read_session(engine) as session:
        meta = {m.name: m.value for m in session.scalars(select(Meta))}
    if SECRET_META not in meta:
        if not create:
            raise StoreError("the store was never initialised (nothing enrolled yet)")
        with write_session(engine) as session:
            if session.get(Meta, SECRET_META) is None:
                return _initialise(session, source, clock)
        with read_session(engine) as session:
            meta = {m.name: m.value for m in session.scalars(select(Meta))}
    try:
        kdf = json.loads(meta[KDF_META]) if KDF_META in meta else None
    except ValueError:  # bytes that are not JSON: edited in the database
        raise StoredDataError("the store's passphrase parameters are malformed") from None
    keyring = source.load(kdf, create=False)
    try:
        secret = unseal(keyring, meta[SECRET_META], context("deployment-secret"))
    except InvalidRecord as exc:
        raise InvalidRecord(f"cannot open the store with {source.name}: {exc}") from None
    return keyring, secret, kdf


def _initialise(
    session: Session, source: KeySource, clock: Callable[[], float]
) -> tuple[Keyring, bytes, dict[str, Any] | None]:
    """First use: create the key source if needed, a deployment secret, and the audit genesis."""
    kdf = source.new_kdf()
    keyring = source.load(kdf, create=True)
    secret = os.urandom(SECRET_BYTES)
    if kdf is not None:
        session.add(Meta(name=KDF_META, value=json.dumps(kdf).encode()))
    session.add(Meta(name=SECRET_META, value=seal(keyring, secret, context("deployment-secret"))))
    session.add(Meta(name=PRIMARY_META, value=keyring.primary.id))
    audit.append(
        session,
        _subkey(secret, b"audit"),
        "init",
        now_us=int(clock() * 1_000_000),
        detail=f"key {keyring.primary.id.hex()}",
    )
    return keyring, secret, kdf
