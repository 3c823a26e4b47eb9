"""SQLAlchemy models of the store: users, encrypted templates, key-value metadata, audit log.

No column holds a user id, a template or a key in clear: ``users.pseudonym`` is an HMAC,
``users.name_record`` and ``templates.record`` are sealed records (:mod:`enrollment.record`),
and ``key_id`` columns only name the key that sealed them (for rotation and retirement).
Times are integer microseconds since the epoch, identical on SQLite and PostgreSQL so the
audit chain hashes the same bytes on both. ``db_migrations`` creates exactly these tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class User(Base):
    """One enrolled identity, known to the database only by its pseudonym."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    #: the display id, sealed with the pseudonym as context (1:N must print who matched)
    name_record: Mapped[bytes] = mapped_column(LargeBinary)
    name_key_id: Mapped[str] = mapped_column(String(16), index=True)
    #: "active" or "revoked" (templates deleted, re-enrolment required)
    status: Mapped[str] = mapped_column(String(16), default="active")
    #: random id renewed at every (re-)enrolment and bound into each template's context
    reference: Mapped[str] = mapped_column(String(32))
    created_us: Mapped[int] = mapped_column(BigInteger)
    updated_us: Mapped[int] = mapped_column(BigInteger)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    failure_window_start_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    locked_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: enrolments of this pseudonym so far (a restored older row has a smaller one)
    counter: Mapped[int] = mapped_column(Integer, default=0)
    #: sequence number of the audit event that last changed this row
    state_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: HMAC over every column above and the row's template ids (:mod:`enrollment.state`)
    state_mac: Mapped[str | None] = mapped_column(String(64), nullable=True)

    templates: Mapped[list[TemplateRecord]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TemplateRecord.position",
    )


class TemplateRecord(Base):
    """One sealed template of a user; ``uid`` and the user's reference are in its context.

    ``features`` holds the capture's sealed pre-filter vectors (:mod:`matching.prefilter`),
    computed once at enrolment so that a restarted service loads rather than recomputes them.
    """

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    record: Mapped[bytes] = mapped_column(LargeBinary)
    features: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    created_us: Mapped[int] = mapped_column(BigInteger)

    user: Mapped[User] = relationship(back_populates="templates")


class Meta(Base):
    """Deployment-wide values: the sealed deployment secret, KDF parameters, audit head."""

    __tablename__ = "store_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class AuditEvent(Base):
    """An append-only, HMAC-chained event; never a template, image or clear user id."""

    __tablename__ = "audit_events"
    #: a claim asks for the newest event of its user: one index seek, however long the log
    __table_args__ = (Index("ix_audit_events_subject", "subject", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at_us: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    score: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mac: Mapped[str] = mapped_column(String(64))
