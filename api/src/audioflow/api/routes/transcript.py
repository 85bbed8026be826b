"""Reader API: the transcript as JSON segments or as txt / WebVTT / SRT."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from audioflow.api import transcripts
from audioflow.api.deps import Ctx, MeetingId, ReaderAuth
from audioflow.api.schemas import ERROR_RESPONSES, TranscriptPublic
from audioflow.core.api_paths import MEETINGS
from audioflow.core.db import queries

router = APIRouter(prefix=MEETINGS, tags=["transcript"], dependencies=[ReaderAuth], responses=ERROR_RESPONSES)

MEDIA = {
    "txt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
}
RENDER = {"txt": transcripts.as_txt, "vtt": transcripts.as_vtt, "srt": transcripts.as_srt}


@router.get(
    "/{meeting_id}/transcript",
    response_model=TranscriptPublic,
    responses={200: {"content": {media.split(";")[0]: {} for media in MEDIA.values()}}},
)
async def get_transcript(
    meeting_id: MeetingId, ctx: Ctx, format: Annotated[Literal["json", "txt", "vtt", "srt"], Query()] = "json"
) -> TranscriptPublic | PlainTextResponse:
    def load() -> TranscriptPublic:
        with ctx.sessions() as session:
            meeting = queries.get_meeting(session, meeting_id)
            segments = transcripts.timeline(
                queries.segments(session, meeting_id), queries.meeting_timeline(session, meeting)
            )
        return TranscriptPublic(meeting_id=meeting_id, segments=segments)

    transcript = await run_in_threadpool(load)
    if format == "json":
        return transcript
    filename = f"{meeting_id}.{format}"
    return PlainTextResponse(
        RENDER[format](transcript.segments),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
