"""Database rows a test writes by hand, as the gateway and the workers would have written them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from audioflow.core.db.models import Chunk, Recording, Segment


def settle(session: Session, meeting_id: str, seqs: Sequence[int], *, with_chunks: bool = True) -> None:
    """Chunks ``seqs`` (stored too, unless the gateway already did: ``with_chunks``) transcribed with
    their tails, and the recording through the last of them: a meeting's rows say it finished once it
    has ended."""
    for seq in seqs:
        if with_chunks:
            session.add(
                Chunk(
                    meeting_id=meeting_id, seq=seq, sha256="0" * 64, size_bytes=0, data_bytes=0, duration_s=1
                )
            )
        session.add(
            Segment(
                meeting_id=meeting_id,
                seq=seq,
                engine="x",
                start_s=0,
                end_s=1,
                text="",
                decode_s=0,
                tail_kept=True,
            )
        )
    session.add(Recording(meeting_id=meeting_id, concatenated_through=max(seqs)))
