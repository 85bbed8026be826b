"""Producer → gateway: signed chunk uploads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import ValidationError
from starlette.applications import Starlette

from audioflow.api.acceptance import WAV_CONTENT_TYPES, Accepted, signing_secret
from audioflow.api.context import AppContext
from audioflow.api.fetch import fetch_chunk_async
from audioflow.api.group_commit import GroupCommit
from audioflow.api.guards import chunk_body
from audioflow.api.schemas import ERROR_RESPONSES, ChunkAccepted, ErrorEnvelope, WebhookChunk
from audioflow.core.api_paths import MEETINGS
from audioflow.core.errors import BadRequest, UnsupportedMediaType
from audioflow.core.ids import check_meeting_id, check_seq, parse_seq
from audioflow.core.metrics import CHUNKS_INGESTED
from audioflow.core.signing import PresentedSignature, chunk_target, verified

CHUNK_ROUTE = MEETINGS + "/{meeting_id:path}/chunks/{seq}"
WEBHOOK_ROUTE = "/webhooks/chunk"
router = APIRouter(tags=["ingest"], responses=ERROR_RESPONSES)
# 201 is the routes' default; the same bytes again are answered 200 with the same body.
DUPLICATE: dict[int | str, dict[str, Any]] = {
    200: {"model": ChunkAccepted, "description": "Duplicate: these bytes were already accepted"},
    507: {"model": ErrorEnvelope, "description": "The data folder is full (storage_full); retry later"},
}


def verified_signature(
    ctx: AppContext, headers: Mapping[str, str], body: bytes | memoryview, target: str | None = None
) -> PresentedSignature:
    return verified(
        signing_secret(ctx.settings),
        headers,
        body,
        target=target,
        tolerance_s=ctx.settings.signature_tolerance_s,
    )


def group_commit(app: Starlette) -> GroupCommit:
    committer: GroupCommit = app.state.group_commit
    return committer


def answer(accepted: Accepted) -> tuple[int, ChunkAccepted]:
    """The status and body that answer an accepted chunk: 201 new, 200 the same bytes again."""
    return 201 if accepted.status == "created" else 200, accepted


async def accept_upload(request: Request, meeting_id: str, seq: str) -> Accepted:
    """``PUT …/chunks/{seq}``: what the route and the fast path (``api/ingest_fast_path.py``) both do."""
    ctx: AppContext = request.app.state.ctx
    try:
        check_meeting_id(meeting_id)
        seq_number = parse_seq(seq)
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if media not in WAV_CONTENT_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {media or '(none)'!r} is not audio/wav", code="not_audio_wav"
            )
        body = chunk_body(request)  # received by guards.BodyGuard, within its limits
        # The signature covers where the chunk lands, so a captured upload cannot be replayed elsewhere.
        signature = verified_signature(ctx, request.headers, body, chunk_target(meeting_id, seq_number))
        return await group_commit(request.app).accept(meeting_id, seq_number, body, signature)
    except Exception:
        CHUNKS_INGESTED.labels("rejected").inc()
        raise


async def accept_webhook(request: Request) -> Accepted:
    """``POST /webhooks/chunk``: what the route and the fast path both do."""
    ctx: AppContext = request.app.state.ctx
    try:
        body = await request.body()  # within the size and time limits of guards.BodyGuard
        signature = verified_signature(ctx, request.headers, body)  # the body names the meeting and seq
        payload = _webhook_payload(body)
        check_meeting_id(payload.meeting_id)
        check_seq(payload.seq)
        data = await fetch_chunk_async(payload.url, ctx.settings)
        return await group_commit(request.app).accept(payload.meeting_id, payload.seq, data, signature)
    except Exception:
        CHUNKS_INGESTED.labels("rejected").inc()
        raise


def _webhook_payload(body: bytes) -> WebhookChunk:
    try:  # parsed and validated in one pass (pydantic-core): malformed JSON is a ValidationError too
        return WebhookChunk.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if errors[0]["type"] == "json_invalid":  # not JSON at all (bad UTF-8, syntax, nesting too deep)
            raise BadRequest(f"body is not UTF-8 JSON: {errors[0]['msg']}", code="invalid_json") from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in errors[:3]
        )
        raise BadRequest(
            f"body is not the JSON {{meetingId, seq, url}}: {problems}", code="invalid_json"
        ) from None


def _respond(accepted: Accepted, response: Response) -> ChunkAccepted:
    response.status_code, body = answer(accepted)
    return body


@router.put(
    CHUNK_ROUTE,
    status_code=201,
    response_model=ChunkAccepted,
    responses=DUPLICATE,
    summary="Upload one WAV chunk (Standard Webhooks signature over the method, path and raw body)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_chunk(
    meeting_id: str,
    seq: str,
    request: Request,
    response: Response,
    content_type: Annotated[str | None, Header()] = None,  # declared for the OpenAPI document
) -> ChunkAccepted:
    return _respond(await accept_upload(request, meeting_id, seq), response)


@router.post(
    WEBHOOK_ROUTE,
    status_code=201,
    response_model=ChunkAccepted,
    responses={
        **DUPLICATE,
        502: {"model": ErrorEnvelope, "description": "Fetching the URL failed (download_failed)"},
    },
    summary="A chunk by URL: JSON {meetingId, seq, url}, signed; the gateway fetches the URL",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": WebhookChunk.model_json_schema()}},
        }
    },
)
async def webhook_chunk(request: Request, response: Response) -> ChunkAccepted:
    return _respond(await accept_webhook(request), response)
