"""How both workers speak to a meeting's page: its events, and the announcement that it completed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core import events, meeting_phase
from audioflow.core.db.queries import Phase
from audioflow.core.keys import Keys


@dataclass
class Publisher:
    """Publishes a meeting's events; failures to publish never undo committed work. Each event names the
    generation of the meeting it is about (see ``queries.generation``): once that meeting is deleted,
    nothing more is kept for it (see ``events.publish``)."""

    client: redis.Redis
    keys: Keys
    maxlen: int

    def __call__(
        self, meeting_id: str, type_: events.EventType, data: Mapping[str, Any], *, generation: str
    ) -> None:
        events.publish(
            self.client, self.keys, meeting_id, type_, data, generation=generation, maxlen=self.maxlen
        )

    def log(self, meeting_id: str, data: Mapping[str, Any], generation: str | None) -> None:
        """A forwarded log line (see ``MeetingLogForwarder``)."""
        events.publish(
            self.client, self.keys, meeting_id, "log", data, generation=generation, maxlen=self.maxlen
        )

    def marked(
        self,
        meeting_id: str,
        type_: events.EventType,
        data: Mapping[str, Any],
        *,
        generation: str,
        mark: str,
        value: str = "1",
        once: bool,
    ) -> bool:
        """Publish and note ``mark`` atomically (see ``events.publish_marked``)."""
        return events.publish_marked(
            self.client,
            self.keys,
            meeting_id,
            type_,
            data,
            generation=generation,
            mark=mark,
            value=value,
            once=once,
            maxlen=self.maxlen,
        )

    def phase(self, meeting_id: str, phase: Phase, *, generation: str) -> None:
        """``meeting.phase``, through its one owner (``core.meeting_phase``)."""
        meeting_phase.publish_phase(
            self.client, self.keys, meeting_id, phase, generation=generation, maxlen=self.maxlen
        )

    def announced(self, meeting_id: str, mark: str) -> str | None:
        return events.announced(self.client, self.keys, meeting_id, mark)


def announce_if_completed(
    sessions: sessionmaker[Session], publish: Publisher, meeting_id: str, generation: str
) -> None:
    """After a worker's commit and its event: if that finished an ended meeting, say so (both workers
    may; harmless), unless a peer's event is still on its way (that peer says so after it)."""
    with sessions() as session:
        phase = meeting_phase.finished_phase(session, meeting_id, generation)
        ready = phase is not None and meeting_phase.announceable(
            session, publish.client, publish.keys, meeting_id, phase
        )
    if phase is not None and ready:
        publish.phase(meeting_id, phase, generation=generation)
