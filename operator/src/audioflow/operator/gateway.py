"""A small async client for the gateway's reader API (design §3), as the operator uses it.

Failures are typed so that the kopf adapters can choose the retry: :class:`GatewayUnavailable` (cannot
connect, timed out, 5xx) is temporary; :class:`GatewayRejected` (401, 403, 400, 422...) means the
request or the credentials are wrong; :class:`MeetingNotFound` and :class:`MeetingExists` are answers,
not failures. Every error carries a CamelCase ``reason`` for a status condition.

Meeting answers are validated with the gateway's own model (``core.meeting_model.MeetingPublic``, the
one its OpenAPI document is built from); an answer that does not fit it is :class:`GatewayBadAnswer`.
"""

from __future__ import annotations

from typing import Any

import httpx
import pydantic

from audioflow.core.api_paths import MEETINGS, meeting_path
from audioflow.core.meeting_model import MeetingPublic
from audioflow.core.wav import AudioFormat


class GatewayError(Exception):
    reason = "GatewayError"

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        if reason is not None:
            self.reason = reason


class GatewayUnavailable(GatewayError):
    """The gateway cannot be reached or failed on its side: retry later."""

    reason = "GatewayUnavailable"


class GatewayRejected(GatewayError):
    """The gateway answered with a client error: the request or the API token is wrong."""

    reason = "GatewayRejected"


class GatewayBadAnswer(GatewayError):
    """The gateway answered 2xx with a body that is not a meeting (a gateway of another version, or a
    proxy's page): retried like a rejection, slowly."""

    reason = "GatewayBadAnswer"


class MeetingNotFound(GatewayError):
    reason = "MeetingNotFound"


class MeetingExists(GatewayError):
    reason = "MeetingExists"


_REASONS = {401: "Unauthorized", 403: "Forbidden", 422: "Invalid", 400: "BadRequest"}


class Gateway:
    """One pooled HTTP client for the operator's lifetime; ``aclose()`` in cleanup."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise GatewayUnavailable(
                f"gateway {self.base_url} timed out ({type(exc).__name__})", reason="GatewayTimeout"
            ) from exc
        except httpx.TransportError as exc:
            raise GatewayUnavailable(
                f"cannot reach the gateway at {self.base_url}: {exc or type(exc).__name__}",
                reason="GatewayUnreachable",
            ) from exc
        if response.status_code >= 500:
            raise GatewayUnavailable(
                f"gateway {method} {path} answered {response.status_code}: {_message(response)}",
                reason="GatewayServerError",
                status=response.status_code,
            )
        return response

    def _reject(self, method: str, path: str, response: httpx.Response) -> GatewayError:
        status = response.status_code
        message = f"gateway {method} {path} answered {status}: {_message(response)}"
        if status == 404:
            return MeetingNotFound(message, status=status)
        if status == 409 and _code(response) == "meeting_exists":
            return MeetingExists(message, status=status)
        return GatewayRejected(message, reason=_REASONS.get(status, "GatewayRejected"), status=status)

    async def _meeting(self, method: str, path: str, ok: int = 200, **kwargs: Any) -> MeetingPublic:
        response = await self._request(method, path, **kwargs)
        if response.status_code != ok:
            raise self._reject(method, path, response)
        try:
            return MeetingPublic.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise GatewayBadAnswer(
                f"gateway {method} {path} answered {response.status_code} with no meeting: "
                f"{exc.error_count()} problem(s), first {exc.errors()[0]['msg']!r} "
                f"at {'.'.join(map(str, exc.errors()[0]['loc'])) or 'the body'}",
                status=response.status_code,
            ) from exc

    async def create_meeting(self, meeting_id: str, fmt: AudioFormat) -> MeetingPublic:
        """Register a meeting; :class:`MeetingExists` when the id is taken."""
        # Not validated here: a format the gateway refuses is its 422 (GatewayRejected, "Invalid").
        payload = {
            "id": meeting_id,
            "format": {"sample_rate": fmt.sample_rate, "channels": fmt.channels, "bits": fmt.bits},
        }
        return await self._meeting("POST", MEETINGS, ok=201, json=payload)

    async def get_meeting(self, meeting_id: str) -> MeetingPublic:
        return await self._meeting("GET", meeting_path(meeting_id))

    async def end_meeting(self, meeting_id: str) -> MeetingPublic:
        return await self._meeting("POST", meeting_path(meeting_id) + "/end")

    async def delete_meeting(self, meeting_id: str) -> None:
        path = meeting_path(meeting_id)
        response = await self._request("DELETE", path)
        if response.status_code != 204:
            raise self._reject("DELETE", path, response)

    def recording_url(self, meeting_id: str, public_url: str | None = None) -> str:
        return (public_url or self.base_url).rstrip("/") + meeting_path(meeting_id) + "/recording.wav"


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _code(response: httpx.Response) -> str | None:
    code = _error(response).get("code")
    return code if isinstance(code, str) else None


def _message(response: httpx.Response) -> str:
    message = _error(response).get("message")
    return message if isinstance(message, str) else response.text[:200]
