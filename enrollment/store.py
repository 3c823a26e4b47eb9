"""The template store: the one API that enrolment, verification and the CLI use.

Templates arrive as opaque bytes (a serialised vessel-graph template) and are stored only as
sealed records (:mod:`enrollment.record`) under the pseudonym of their user. Every method is
one transaction: an enrolment is written completely or not at all, and a refused request
(duplicate enrolment, unknown user, bad id) leaves the database byte-for-byte unchanged.

Typical use::

    store = TemplateStore.open(load_settings())
    store.enroll("alice", [template_bytes, ...])
    revision, refs = store.references()              # pre-filter records, for a cache
    blobs, problems = store.open_references([r.row_id for r in refs[:2]])
    store.settle_verify("alice", score=0.83, accepted=True, uids=..., revision=revision)

Claims (:meth:`TemplateStore.settle_verify`, :meth:`TemplateStore.settle_identify`) are settled
in one write transaction that checks the store revision and the user's authenticated state
(:mod:`enrollment.state`), applies the lockout policy and appends the audit event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from biometrics.errors import ConfigurationError, InputError, StoredDataError, StoreError
from biometrics.settings import Settings
from enrollment import audit, state
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
    StaleReferences,
    UnknownUser,
    UserExists,
    UserRevoked,
)
from enrollment.ids import normalize_user_id, pseudonym
from enrollment.keys import Keyring, KeySource, key_source
from enrollment.models import AuditEvent, Meta, TemplateRecord, User
from enrollment.policy import LockoutPolicy
from enrollment.record import context, key_id_of, seal, unseal

if TYPE_CHECKING:
    from matching.protected import TransformKey

SECRET_BYTES = 32
SECRET_META = "secret"
KDF_META = "kdf"
#: id of the key new records must be sealed with; rotation moves it, enrolment checks it
PRIMARY_META = "primary_key"
#: counter moved by every change of the references (services reload when it moves)
REVISION_META = "revision"
#: MAC'd marker: every user row of this store carries a state MAC (see _seal_legacy_rows)
STATE_META = "state_macs"
#: MAC'd marker of a store that keeps protected references, naming their transform-key
#: generation (absent: plain templates)
PROTECTION_META = "protection"
#: written into the init event of stores that seal user state from the start
SEALED_AT_INIT = "user state sealed"
#: a terminal may fail this many times the per-user limit of 1:N attempts before it pauses
TERMINAL_FACTOR = 4
#: rows fetched per query when loading references (keeps IN lists short)
_BATCH = 500
#: a claim needs its user's template ids, not the sealed blobs (~6 KB a capture)
_UIDS_ONLY = selectinload(User.templates).load_only(TemplateRecord.uid, TemplateRecord.position)


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
        self._state_key = _subkey(secret, b"state")
        self._transform_secret = _subkey(secret, b"protected transform")

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
            # The key and passphrases come from the settings resolver (the only reader of the
            # environment); ``environ`` replaces them, by variable name, where a caller must.
            secrets = settings.key_secrets() if environ is None else environ
            source = key_source(settings.resolved_key_file(), secrets)
            keyring, secret, kdf = _unlock(engine, source, clock, create=create)
        except BaseException:
            engine.dispose()
            raise
        store = cls(
            engine,
            keyring,
            source,
            secret,
            kdf=kdf,
            policy=policy or LockoutPolicy.from_settings(settings),
            clock=clock,
        )
        try:
            store._seal_legacy_rows()
        except BaseException:
            engine.dispose()
            raise
        return store

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

    def append_audit(self, session: Session, event: str, **fields: Any) -> AuditEvent:
        """Append an event; pending row changes are not flushed first (the chain does not
        depend on them), so a claim writes its user row once, whatever the outcome."""
        with session.no_autoflush:
            return audit.append(session, self._audit_key, event, now_us=self._now_us(), **fields)

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

    def enroll(
        self,
        user_id: str,
        templates: list[bytes],
        *,
        features: list[bytes] | None = None,
        replace: bool = False,
    ) -> None:
        """Store ``templates`` (and their pre-filter ``features``) for ``user_id`` atomically.

        An active user is refused with :class:`UserExists` unless ``replace``; a revoked user
        is re-enrolled without it. Each (re-)enrolment gets a fresh reference id and a higher
        enrolment counter, so records of an earlier enrolment can never be mixed with the new
        ones, and the store revision moves so that running services reload their references.
        """
        name, subject = self._pseudonym(user_id)
        if not templates or not all(isinstance(t, bytes) and t for t in templates):
            raise InputError("enrolment needs at least one non-empty template")
        if features is not None and len(features) != len(templates):
            raise InputError("enrolment needs one pre-filter record per template")
        now_us = self._now_us()
        with write_session(self.engine) as session:
            user = session.scalar(
                select(User).where(User.pseudonym == subject).options(selectinload(User.templates))
            )
            if user is not None:
                self._check_state(session, user, name)
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
                    counter=self._deleted_counter(session, subject) + 1,
                )
                session.add(user)
            else:
                user.templates.clear()
                session.flush()  # the old records go before the new ones arrive
                user.status, user.reference, user.updated_us = "active", reference, now_us
                user.counter += 1
                LockoutPolicy.reset(user)
            for position, template in enumerate(templates):
                uid = uuid.uuid4().hex
                record = TemplateRecord(
                    uid=uid,
                    position=position,
                    record=seal(
                        self.keyring,
                        template,
                        context("template", subject, user.reference, uid),
                        now=now_us // 1_000_000,
                    ),
                    key_id=self.keyring.primary.id.hex(),
                    created_us=now_us,
                )
                if features is not None:
                    record.features = seal(
                        self.keyring,
                        features[position],
                        context("features", subject, user.reference, uid),
                    )
                user.templates.append(record)
            event = self.append_audit(
                session,
                "enroll",
                subject=subject,
                decision=outcome,
                detail=f"{len(templates)} templates, enrolment {user.counter}",
            )
            self._seal_state(user, event.seq)
            self.bump_revision(session)

    @staticmethod
    def _deleted_counter(session: Session, subject: str) -> int:
        """Enrolments of a deleted pseudonym, from the audit log, so a new row counts on."""
        return int(
            session.scalar(
                select(func.count(AuditEvent.seq)).where(
                    AuditEvent.subject == subject, AuditEvent.event == "enroll"
                )
            )
            or 0
        )

    def templates(self, user_id: str) -> list[bytes]:
        """Decrypted templates of one user; :class:`UnknownUser`/:class:`UserRevoked`."""
        name, subject = self._pseudonym(user_id)
        with read_session(self.engine) as session:
            user = self._find(session, name, subject)
            self._check_state(session, user, name)
            if user.status != "active":
                raise UserRevoked(f"user {name} was revoked; re-enrol to use it again")
            return self._open_templates(user)

    def reference_index(self) -> tuple[int, list[tuple[int, str]]]:
        """The store revision and the (row id, uid) of every active capture: cheap, no crypto.

        A service diffs this against what it holds and loads only the new rows
        (:meth:`load_references`), so an enrolment by another process costs it one row, not a
        reload of the whole gallery.
        """
        with read_session(self.engine) as session:
            revision = self._revision(session)
            rows = session.execute(
                select(TemplateRecord.id, TemplateRecord.uid)
                .join(User)
                .where(User.status == "active")
                .order_by(TemplateRecord.id)
            ).all()
        return revision, [(int(i), str(u)) for i, u in rows]

    def load_references(self, row_ids: Sequence[int]) -> list[Reference]:
        """Pre-filter records of the given capture rows, for a service's gallery cache.

        Templates themselves are not returned (see :meth:`open_references`): a service keeps
        only the pre-filter vectors of the whole gallery in memory. A capture enrolled before
        pre-filter records existed comes with its template instead, so the caller can compute
        and :meth:`attach_features` them once. A record that fails to open is reported in
        :attr:`Reference.problem` instead of failing every other user's 1:N search.
        """
        out: list[Reference] = []
        with read_session(self.engine) as session:
            for start in range(0, len(row_ids), _BATCH):
                rows = session.execute(
                    select(
                        TemplateRecord.id,
                        TemplateRecord.user_id,
                        TemplateRecord.uid,
                        TemplateRecord.features,
                        TemplateRecord.record,
                        User.pseudonym,
                        User.reference,
                    )
                    .join(User)
                    .where(TemplateRecord.id.in_(list(row_ids[start : start + _BATCH])))
                    .where(User.status == "active")
                ).all()
                out.extend(self._reference(*row) for row in rows)
        return out

    def _reference(
        self,
        row_id: int,
        user_pk: int,
        uid: str,
        sealed: bytes | None,
        record: bytes,
        subject: str,
        reference: str,
    ) -> Reference:
        try:
            if sealed is None:
                blob = self.unseal(record, context("template", subject, reference, uid))
                return Reference(row_id, user_pk, subject, uid, None, blob)
            blob = self.unseal(sealed, context("features", subject, reference, uid))
            return Reference(row_id, user_pk, subject, uid, blob, None)
        except InvalidRecord as exc:
            return Reference(row_id, user_pk, subject, uid, None, None, str(exc))

    def attach_features(self, features: Mapping[int, bytes]) -> None:
        """Seal pre-filter records computed for captures enrolled without them (by row id)."""
        if not features:
            return
        with write_session(self.engine) as session:
            for record in session.scalars(
                select(TemplateRecord).where(TemplateRecord.id.in_(list(features)))
            ):
                if record.features is None:
                    owner = record.user
                    ctx = context("features", owner.pseudonym, owner.reference, record.uid)
                    record.features = seal(self.keyring, features[record.id], ctx)

    def user_names(self, user_pks: Collection[int]) -> dict[int, str]:
        """Display ids of user rows (for reports such as ``retauth dedup``)."""
        with read_session(self.engine) as session:
            users = session.scalars(select(User).where(User.id.in_(list(user_pks)))).all()
            return {u.id: self._name(u) for u in users}

    def identity(self, user_id: str) -> tuple[str, str]:
        """(normalised id, pseudonym) of a user id: the one HMAC a claim needs."""
        return self._pseudonym(user_id)

    def transform_key(self, generation: int) -> TransformKey:
        """The protected-template transform key of this deployment, renewal ``generation``.

        Derived from the deployment secret like the pseudonym and audit keys, so it is held
        exactly as they are (sealed under the data key, kept across data-key rotations, never
        logged: :class:`TransformKey` hides it from ``repr``). A higher generation is a new,
        unrelated key: references made under it cannot be linked to the old ones.
        """
        from matching.protected import TransformKey  # numpy and OpenCV: only when used

        return TransformKey(self._transform_secret, generation)

    # --- protected references -------------------------------------------------------------

    def protection(self, wanted: bool) -> int | None:
        """Check that this store keeps the kind of references the deployment asks for.

        Returns the transform-key generation of a store of protected references (None for
        plain templates). A store without references takes the kind asked for (audited); a
        store with references of the other kind is refused, since one kind cannot be
        converted into the other without the eyes (re-enrol everyone into a new store).
        The marker is MAC'd with the deployment secret: edited, it is tampering, and
        removed, a protected store reads as a plain one whose records all fail to parse.
        """
        generation = self.protected_generation()
        if wanted == (generation is not None):
            return generation
        with write_session(self.engine) as session:
            generation = self._protection(session)
            if wanted == (generation is not None):
                return generation
            if session.scalar(select(func.count(TemplateRecord.id))):
                have, asked = (
                    ("protected", "plain") if generation is not None else ("plain", "protected")
                )
                raise ConfigurationError(
                    f"this store holds {have} references but protected_templates asks for "
                    f"{asked} ones; set protected_templates = {str(not wanted).lower()} "
                    "(RETAUTH_PROTECTED_TEMPLATES) or enrol everyone into a new store"
                )
            if not wanted:
                session.delete(session.get(Meta, PROTECTION_META))
                self.append_audit(session, "protection", detail="plain templates")
                return None
            session.merge(Meta(name=PROTECTION_META, value=self._protection_marker(0)))
            self.append_audit(session, "protection", detail="protected templates, generation 0")
            return 0

    def protected_generation(self) -> int | None:
        """The transform-key generation if this store keeps protected references, else None
        (a read: what a command that only inspects the store needs; the marker is checked)."""
        with read_session(self.engine) as session:
            return self._protection(session)

    def renew_protection(self) -> int:
        """Issue the next transform-key generation (after a leak of protected references).

        Every reference made under an earlier generation stops matching at once (services see
        the revision move): each user re-enrols, and the new references cannot be linked to
        the old ones. Returns the new generation.
        """
        with write_session(self.engine) as session:
            current = self._protection(session)
            if current is None:
                raise ConfigurationError(
                    "this store keeps plain templates: there is no transform key to renew"
                )
            session.merge(Meta(name=PROTECTION_META, value=self._protection_marker(current + 1)))
            self.append_audit(
                session, "protection", detail=f"transform key renewed: generation {current + 1}"
            )
            self.bump_revision(session)
            return current + 1

    def _protection_marker(self, generation: int) -> bytes:
        text = f"generation {generation}".encode()
        mac = hmac.new(self._state_key, b"protection:" + text, hashlib.sha256).hexdigest()
        return text + b":" + mac.encode()

    def _protection(self, session: Session) -> int | None:
        meta = session.get(Meta, PROTECTION_META)
        if meta is None:
            return None
        value = bytes(meta.value)
        try:
            generation = int(value.partition(b":")[0].removeprefix(b"generation "))
        except ValueError:
            generation = -1
        if generation < 0 or not hmac.compare_digest(value, self._protection_marker(generation)):
            raise InvalidRecord(
                "the store's protection marker was edited: the store was tampered with"
            )
        return generation

    def open_references(self, row_ids: Sequence[int]) -> tuple[dict[int, bytes], dict[int, str]]:
        """Decrypted templates of capture rows (a 1:1 claim or a 1:N shortlist), and why each
        row that would not open failed: one corrupt record must not fail everyone's 1:N."""
        opened: dict[int, bytes] = {}
        problems: dict[int, str] = {}
        with read_session(self.engine) as session:
            rows = session.execute(
                select(TemplateRecord.id, TemplateRecord.uid, TemplateRecord.record, User)
                .join(User)
                .where(TemplateRecord.id.in_(list(row_ids)))
            ).all()
            for row_id, uid, record, user in rows:
                ctx = context("template", user.pseudonym, user.reference, uid)
                try:
                    opened[row_id] = self.unseal(record, ctx)
                except InvalidRecord as exc:
                    problems[row_id] = str(exc)
        return opened, problems

    def users(self) -> list[dict[str, Any]]:
        """Enrolled users without biometric data: id, created, n_templates, status, locked."""
        now_us = self._now_us()
        with read_session(self.engine) as session:
            rows = session.execute(
                select(User, func.count(TemplateRecord.id))
                .outerjoin(TemplateRecord)
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
            user = self._find(session, name, subject)
            self._check_state(session, user, name)
            session.delete(user)
            self.append_audit(
                session, "delete", subject=subject, detail=f"enrolment {user.counter}"
            )
            self.bump_revision(session)
        self._purge_wal()

    def revoke(self, user_id: str) -> None:
        """Delete a user's templates but keep the id, refused until it is re-enrolled."""
        name, subject = self._pseudonym(user_id)
        with write_session(self.engine) as session:
            user = self._find(session, name, subject)
            self._check_state(session, user, name)
            user.templates.clear()
            user.status, user.reference, user.updated_us = (
                "revoked",
                uuid.uuid4().hex,
                self._now_us(),
            )
            LockoutPolicy.reset(user)
            event = self.append_audit(session, "revoke", subject=subject)
            self._seal_state(user, event.seq)
            self.bump_revision(session)
        self._purge_wal()

    def _purge_wal(self) -> None:
        """Best effort: fold the WAL into the database so deleted records leave no copy."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:  # outside any transaction, or it cannot run
                conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- authenticated state and revision -------------------------------------------------

    def _seal_state(self, user: User, seq: int | None) -> None:
        state.seal(self._state_key, user, _uids(user), seq)

    def _check_state(self, session: Session, user: User, name: str) -> None:
        state.check(session, self._state_key, user, _uids(user), name)

    @staticmethod
    def _revision(session: Session) -> int:
        meta = session.get(Meta, REVISION_META)
        return int(meta.value) if meta is not None else 0

    def bump_revision(self, session: Session) -> None:
        """Tell running services that references changed (enrol, replace, revoke, delete,
        rotate). Not a security control: a service validates every candidate it accepts
        against the user's authenticated state, so a stale or forged revision can delay
        what it sees, never make it accept a removed reference."""
        session.merge(Meta(name=REVISION_META, value=str(self._revision(session) + 1).encode()))

    def revision(self) -> int:
        """Current store revision (a cheap read: services poll it before every decision)."""
        with read_session(self.engine) as session:
            return self._revision(session)

    def _seal_legacy_rows(self) -> None:
        """Authenticate rows written before user state had a MAC, once (schema 0001 → 0002).

        Stores created by this version carry a MAC'd marker from their first transaction;
        an upgraded store gets it here, with an ``upgrade`` audit event. Without the marker
        the store is only taken for a legacy one if no user row has a MAC and no ``upgrade``
        event was ever logged: otherwise someone removed the marker (to have edited rows
        sealed as legacy ones), which is tampering.
        """
        marker = _state_marker(self._state_key)
        with read_session(self.engine) as session:
            meta = session.get(Meta, STATE_META)
            if meta is not None:
                if hmac.compare_digest(bytes(meta.value), marker):
                    return
                raise InvalidRecord(
                    "the store's state marker was edited: the store was tampered with"
                )
            sealed = session.scalar(select(func.count(User.id)).where(User.state_mac.is_not(None)))
            upgraded = session.scalar(
                select(func.count(AuditEvent.seq)).where(AuditEvent.event == "upgrade")
            )
            first = audit.genesis(session, self._audit_key)
            born_sealed = first is not None and SEALED_AT_INIT in (first.detail or "")
            if sealed or upgraded or born_sealed or first is None:
                raise InvalidRecord(
                    "the store's state marker is missing: the store was tampered with"
                )
        with write_session(self.engine) as session:
            users = session.scalars(select(User).options(selectinload(User.templates))).all()
            for user in users:
                self._seal_state(user, state.newest_event(session, user.pseudonym))
            self.append_audit(session, "upgrade", detail=f"sealed {len(users)} user states")
            session.merge(Meta(name=STATE_META, value=marker))

    @staticmethod
    def _claimant(session: Session, where: ColumnElement[bool]) -> User | None:
        """The user a claim is about, with its template ids, in one statement (a claim runs
        under the store's write lock, so every statement saved is latency for everyone)."""
        ids = joinedload(User.templates).load_only(TemplateRecord.uid, TemplateRecord.position)
        result = session.execute(select(User).where(where).options(ids))
        return result.unique().scalar_one_or_none()

    @staticmethod
    def _head_seq(session: Session) -> int:
        return int(session.scalar(select(func.max(AuditEvent.seq))) or 0)

    # --- claims ---------------------------------------------------------------------------

    def settle_verify(
        self,
        identity: tuple[str, str],
        *,
        score: float,
        accepted: bool,
        uids: Collection[str],
        revision: int | None,
        terminal: str = "local",
    ) -> Outcome:
        """Record a 1:1 decision in ONE write transaction, after checking it may stand.

        ``identity`` is :meth:`identity` of the claimed id. The caller scored the probe against
        the references it holds for that id (their ``uids``) at store ``revision``. Inside the transaction, under the store's write lock:
        the revision and the user's authenticated state are checked (:class:`StaleReferences`
        when the caller must reload and score again), the lockout policy is applied, the
        counters are updated and the decision audited. So the lock check and the failure count
        can never be split by a concurrent claim, and a process killed at any point leaves
        either all of it or none. An unknown or revoked id, or a locked one, costs the same
        single transaction (one audit event, one row write) as an accepted claim.
        """
        name, subject = identity
        _check_score(score)
        now_us = self._now_us()
        with write_session(self.engine) as session:
            self._require_revision(session, revision)
            user = self._claimant(session, User.pseudonym == subject)
            if user is None:
                self._count_terminal_failure(session, terminal, now_us)
                self.append_audit(session, "verify", subject=subject, decision="unknown")
                return Outcome("unknown", name)
            self._check_state(session, user, name)
            if user.status != "active":
                event = self.append_audit(session, "verify", subject=subject, decision="revoked")
                self._seal_state(user, event.seq)
                return Outcome("revoked", name)
            if set(uids) != set(_uids(user)):
                raise StaleReferences("the user's references changed during the claim")
            remaining = self.policy.locked_for_s(user, now_us)
            if remaining > 0:
                event = self.append_audit(session, "refused", subject=subject, decision="locked")
                self._seal_state(user, event.seq)
                return Outcome("locked", name, remaining)
            if accepted:
                LockoutPolicy.reset(user)
            elif self.policy.register_failure(user, now_us):
                self.append_audit(session, "lockout", subject=subject, decision="locked")
            event = self.append_audit(
                session,
                "verify",
                subject=subject,
                decision="accept" if accepted else "reject",
                score=float(score),
            )
            self._seal_state(user, event.seq)
            return Outcome("accept" if accepted else "reject", name)

    def settle_identify(
        self,
        candidates: Sequence[Candidate],
        *,
        threshold: float,
        best_score: float,
        revision: int | None,
        terminal: str = "local",
    ) -> Outcome:
        """Record a 1:N decision in one write transaction: the best *eligible* candidate wins.

        ``candidates`` are the caller's re-scored shortlist (best first). A candidate at or
        above ``threshold`` whose user is locked is refused (audited for that user) and never
        returned; the next one may still match. Each candidate's user state is authenticated
        and its capture must still be among the user's references. A failed 1:N attempt
        counts against the *terminal* that made it (a kiosk, the CLI host), since nobody
        claimed an identity: ``TERMINAL_FACTOR`` × the per-user limit of failures in the
        window pauses 1:N on that terminal for the lockout duration (1:1 keeps working).
        """
        _check_score(best_score)
        now_us = self._now_us()
        with write_session(self.engine) as session:
            self._require_revision(session, revision)
            guard = self._terminal(session, terminal)
            if self.policy.locked_for_s(guard, now_us) > 0:
                self.append_audit(session, "refused", decision="terminal locked")
                return Outcome("locked", None, self.policy.locked_for_s(guard, now_us))
            for candidate in candidates:
                if candidate.score < threshold:
                    break
                user = self._claimant(session, User.id == candidate.user_pk)
                if user is None or user.status != "active" or candidate.uid not in _uids(user):
                    raise StaleReferences("a candidate's references changed during the claim")
                name = self._name(user)
                self._check_state(session, user, name)
                if self.policy.locked_for_s(user, now_us) > 0:
                    event = self.append_audit(
                        session, "refused", subject=user.pseudonym, decision="locked"
                    )
                    self._seal_state(user, event.seq)
                    continue
                LockoutPolicy.reset(user)
                event = self.append_audit(
                    session,
                    "identify",
                    subject=user.pseudonym,
                    decision="accept",
                    score=float(candidate.score),
                )
                self._seal_state(user, event.seq)
                LockoutPolicy.reset(guard)
                self._store_terminal(session, terminal, guard, event.seq)
                return Outcome("accept", name, score=candidate.score)
            self._count_terminal_failure(session, terminal, now_us, guard)
            self.append_audit(session, "identify", decision="reject", score=float(best_score))
            return Outcome("reject", None)

    def _require_revision(self, session: Session, revision: int | None) -> None:
        if revision is not None and self._revision(session) != revision:
            raise StaleReferences("the store changed since the references were loaded")

    def _terminal(self, session: Session, terminal: str) -> Guard:
        """The authenticated failure counter of one terminal (a fresh one if none)."""
        meta = session.get(Meta, self._terminal_key(terminal))
        if meta is None:
            return Guard()
        return Guard.from_bytes(self._state_key, bytes(meta.value))

    def _terminal_key(self, terminal: str) -> str:
        digest = hmac.new(self._state_key, terminal.encode(), hashlib.sha256).hexdigest()
        return f"terminal:{digest[:32]}"

    def _store_terminal(self, session: Session, terminal: str, guard: Guard, seq: int) -> None:
        value = guard.to_bytes(self._state_key, seq)
        session.merge(Meta(name=self._terminal_key(terminal), value=value))

    def _count_terminal_failure(
        self, session: Session, terminal: str, now_us: int, guard: Guard | None = None
    ) -> None:
        guard = guard or self._terminal(session, terminal)
        terminal_policy = LockoutPolicy(
            max_failures=self.policy.max_failures * TERMINAL_FACTOR,
            window_s=self.policy.window_s,
            lockout_s=self.policy.lockout_s,
        )
        terminal_policy.register_failure(guard, now_us)
        self._store_terminal(session, terminal, guard, self._head_seq(session) + 1)

    def unlock(self, user_id: str) -> None:
        """Clear a lockout (operator action, audited)."""
        name, subject = self._pseudonym(user_id)
        with write_session(self.engine) as session:
            user = self._find(session, name, subject)
            self._check_state(session, user, name)
            LockoutPolicy.reset(user)
            event = self.append_audit(session, "unlock", subject=subject)
            self._seal_state(user, event.seq)

    # --- audit ----------------------------------------------------------------------------

    def audit_verify(self, expect_head: str | None = None) -> audit.ChainReport:
        """Check the whole audit chain and every user's state against it.

        Beyond :func:`enrollment.audit.verify` (links, numbering, head): a store that has a
        deployment secret must prove a chain from its ``init`` event, every user row must
        carry a valid MAC and name the newest audit event of its pseudonym, every terminal
        counter must be authentic and name an event the log still holds, and with
        ``expect_head`` (``SEQ:MAC`` as printed earlier and kept elsewhere) the log must still
        contain that event unchanged, which is what detects a truncated log whose head was
        copied back from an older state.
        """
        with read_session(self.engine) as session:
            report = audit.verify(session, self._audit_key)
            first = session.get(AuditEvent, 1)
            if first is None or first.event != "init":
                report.note("the audit log does not start with the store's init event (erased)")
            if expect_head is not None:
                audit.check_expected_head(session, report, expect_head)
            for user in session.scalars(select(User).options(_UIDS_ONLY)):
                reason = state.problem(session, self._state_key, user, _uids(user))
                if reason is not None:
                    report.note(f"user row {user.id} {reason}")
                elif (user.state_seq or 0) > report.head_seq:
                    report.note(
                        f"user row {user.id} names event {user.state_seq}, past the log's end"
                    )
            for meta in session.scalars(select(Meta).where(Meta.name.like("terminal:%"))):
                try:
                    guard = Guard.from_bytes(self._state_key, bytes(meta.value))
                except InvalidRecord as exc:
                    report.note(str(exc))
                    continue
                if (guard.seq or 0) > report.head_seq:
                    report.note(f"a terminal counter names event {guard.seq}, past the log's end")
            return report

    def audit_events(self, limit: int | None = None) -> list[dict[str, Any]]:
        with read_session(self.engine) as session:
            return audit.events(session, limit=limit)

    # --- keys -----------------------------------------------------------------------------

    def key_usage(self, session: Session | None = None) -> Counter[str]:
        """How many sealed records each key id protects: templates, pre-filter records, names
        and the deployment secret. ``keys list`` and ``keys rotate`` both count with this."""
        if session is None:
            with read_session(self.engine) as own:
                return self.key_usage(own)
        usage: Counter[str] = Counter()
        for column in (TemplateRecord.key_id, User.name_key_id):
            usage.update(dict(session.execute(select(column, func.count()).group_by(column)).all()))
        usage.update(
            dict(
                session.execute(
                    select(TemplateRecord.key_id, func.count())
                    .where(TemplateRecord.features.is_not(None))
                    .group_by(TemplateRecord.key_id)
                ).all()
            )
        )
        secret = session.get(Meta, SECRET_META)
        if secret is not None:
            usage[key_id_of(secret.value)] += 1
        return usage


@dataclass(frozen=True)
class Reference:
    """One enrolled capture as a service cache sees it (see :meth:`TemplateStore.references`)."""

    row_id: int
    user_pk: int
    subject: str
    uid: str
    features: bytes | None
    template: bytes | None
    problem: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A re-scored 1:N candidate: the user row, the capture that scored and its score."""

    user_pk: int
    uid: str
    score: float


@dataclass(frozen=True)
class Outcome:
    """What the store recorded for a claim: accept, reject, locked, unknown or revoked."""

    decision: str
    user_id: str | None
    locked_for_s: float = 0.0
    score: float | None = None


@dataclass
class Guard:
    """Failure counter of a terminal for 1:N attempts, stored MAC'd in ``store_meta``."""

    failed_attempts: int = 0
    failure_window_start_us: int | None = None
    locked_until_us: int | None = None
    #: the audit event that last changed the counter (audit verify checks it is in the log)
    seq: int | None = None

    def to_bytes(self, key: bytes, seq: int) -> bytes:
        body = [self.failed_attempts, self.failure_window_start_us, self.locked_until_us, seq]
        text = json.dumps(body, separators=(",", ":"))
        tag = hmac.new(key, b"terminal v1\n" + text.encode(), hashlib.sha256).hexdigest()
        return json.dumps({"state": body, "mac": tag}).encode()

    @classmethod
    def from_bytes(cls, key: bytes, value: bytes) -> Guard:
        try:
            stored = json.loads(value)
            body, tag = stored["state"], stored["mac"]
            text = json.dumps(body, separators=(",", ":"))
            failed, start, until, seq = body
        except (ValueError, KeyError, TypeError):
            raise InvalidRecord("a terminal's failure counter is malformed") from None
        expected = hmac.new(key, b"terminal v1\n" + text.encode(), hashlib.sha256).hexdigest()
        if not isinstance(tag, str) or not hmac.compare_digest(tag, expected):
            raise InvalidRecord(
                "a terminal's failure counter was edited: the store was tampered with"
            )
        return cls(int(failed), start, until, seq)


def _uids(user: User) -> list[str]:
    return [t.uid for t in user.templates]


def _check_score(score: float) -> None:
    if not math.isfinite(score):
        raise ValueError("a decision score must be a finite number")


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
    session.add(Meta(name=STATE_META, value=_state_marker(_subkey(secret, b"state"))))
    audit.append(
        session,
        _subkey(secret, b"audit"),
        "init",
        now_us=int(clock() * 1_000_000),
        detail=f"key {keyring.primary.id.hex()}, {SEALED_AT_INIT}",
    )
    return keyring, secret, kdf


def _state_marker(state_key: bytes) -> bytes:
    return hmac.new(state_key, b"state macs on", hashlib.sha256).hexdigest().encode()
