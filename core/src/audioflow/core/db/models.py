"""Tables. Each fact has one writer: the gateway writes meetings and chunks, the processing worker
writes segments, the concat worker writes recordings and gaps. Status is derived from these rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Meeting(Base):
    """A meeting and its audio format; written by the gateway."""

    __tablename__ = "meetings"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    bits: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Chunk(Base):
    """An accepted chunk: its file lives in storage under (meeting_id, seq); written by the gateway."""

    __tablename__ = "chunks"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    data_bytes: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Segment(Base):
    """The transcript of one chunk; written by the processing worker. Times are relative to the chunk.
    A chunk that could not be transcribed after every retry gets a row with ``error`` set."""

    __tablename__ = "segments"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    engine: Mapped[str] = mapped_column(String(32))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    words: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    decode_s: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: The words after the chunk's trailing cut are in (it was decoded as the last chunk of an ended
    #: meeting, or without stitching). Otherwise they are its successor's; an ended meeting whose last
    #: segment lacks them is not completed until it is decoded again (see ``processing.handle``).
    tail_kept: Mapped[bool] = mapped_column(Boolean, default=False, server_default=true())


class Recording(Base):
    """What the recording holds; written by the concat worker (mirrors its on-disk index)."""

    __tablename__ = "recordings"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    concatenated_through: Mapped[int] = mapped_column(Integer, default=-1)
    data_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    failed_reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Gap(Base):
    """A seq that never arrived in time and was bridged by silence; written by the concat worker."""

    __tablename__ = "gaps"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    frames: Mapped[int] = mapped_column(Integer)
    bridged_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """Seen ``webhook-id`` values: the idempotency key of signed deliveries; written by the gateway.
    Pruned once older than twice the signature tolerance (a replay that old is refused anyway)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class DeletedMeeting(Base):
    """When a meeting id was last deleted: a chunk signed before that is a replay and is refused, so a
    captured upload cannot bring a deleted meeting back. Pruned like ``webhook_deliveries``."""

    __tablename__ = "deleted_meetings"

    meeting_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
