"""Fetching a chunk named by URL (the ``/webhooks/chunk`` shape), without trusting the URL.

``http(s)`` URLs must start with an entry of ``AUDIOFLOW_URL_ALLOWLIST``; redirects are not followed;
``file:`` URLs must resolve (symlinks included) to a regular file inside ``AUDIOFLOW_INGEST_ROOT``.
Sizes are bounded while reading, whatever the server claims, and so is time: a download that has not
finished ``AUDIOFLOW_DOWNLOAD_TIMEOUT_S`` after it started fails, however steadily bytes trickle in.
Downloads run in a pool of their own (:data:`MAX_DOWNLOADS` at once; beyond that ``503``), so slow
URLs never take the threads that request handling, readiness and the reader API share; ``file:`` reads
are local and bounded, and run with the request's other work.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from starlette.concurrency import run_in_threadpool

from audioflow.core.errors import BadRequest, DownloadFailed, Forbidden, PayloadTooLarge, Unavailable
from audioflow.core.settings import Settings


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"chunk is larger than the limit of {limit} bytes", code="chunk_too_large")


def _parts(url: httpx.URL) -> tuple[str, str, int | None, str]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port, url.path or "/"


def _allowed(url: str, allowlist: tuple[str, ...]) -> bool:
    """Scheme, host and port equal an entry's, and the path lies under the entry's path.

    Parsed as the client that fetches parses it, and compared by part (not as text) so that
    ``http://allowed.example@evil.example/`` or ``http://allowed.example.evil.example/`` never pass.
    An entry without ``://`` is a host (``https`` only).
    """
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    if target.userinfo or not target.host or ".." in target.path.split("/"):
        return False
    scheme, host, port, path = _parts(target)
    for entry in allowlist:
        try:
            allowed = httpx.URL(entry if "://" in entry else f"https://{entry}/")
        except httpx.InvalidURL:
            continue
        a_scheme, a_host, a_port, a_path = _parts(allowed)
        if (scheme, host, port) == (a_scheme, a_host, a_port) and (
            path == a_path or path.startswith(a_path.rstrip("/") + "/")
        ):
            return True
    return False


def _file_target(url: str, settings: Settings) -> tuple[Path, int]:
    """The regular file a ``file:`` URL names inside the ingest root, and its size within the limit."""
    root = settings.ingest_root
    if root is None:
        raise Forbidden(
            "file: URLs are refused: the server has no AUDIOFLOW_INGEST_ROOT", code="url_forbidden"
        )
    parsed = urllib.parse.urlsplit(url)
    if parsed.netloc not in ("", "localhost"):
        raise Forbidden("file: URLs must not name a host", code="url_forbidden")
    raw_path = urllib.request.url2pathname(parsed.path)
    if "\x00" in raw_path:
        raise BadRequest("file: URL contains a NUL byte", code="invalid_url")
    base = root.resolve()
    try:
        target = (
            (base / raw_path.lstrip("/")).resolve()
            if not Path(raw_path).is_absolute()
            else Path(raw_path).resolve()
        )
        if not target.is_relative_to(base):
            raise Forbidden(f"file: URL points outside the ingest root {str(base)!r}", code="url_forbidden")
        if not target.is_file():
            raise BadRequest(
                "file: URL does not name a regular file under the ingest root", code="url_not_found"
            )
        size = target.stat().st_size
    except (OSError, RuntimeError) as exc:
        raise _unreadable(exc) from None
    if size > settings.max_chunk_bytes:
        raise _too_large(settings.max_chunk_bytes)
    return target, size


def _read_target(target: Path, settings: Settings) -> bytes:
    try:
        with target.open("rb") as handle:
            data = handle.read(settings.max_chunk_bytes + 1)
    except OSError as exc:
        raise _unreadable(exc) from None
    if len(data) > settings.max_chunk_bytes:  # it grew since its size was read
        raise _too_large(settings.max_chunk_bytes)
    return data


def _unreadable(exc: Exception) -> BadRequest:
    """Name too long, unreadable; RuntimeError: a symlink loop."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "symlink loop"
    return BadRequest(f"file: URL cannot be read: {reason}", code="url_not_found")


def _read_file(url: str, settings: Settings) -> bytes:
    return _read_target(_file_target(url, settings)[0], settings)


def _download(url: str, settings: Settings) -> bytes:
    if not _allowed(url, settings.url_allowlist):
        raise Forbidden("URL is not on the server's AUDIOFLOW_URL_ALLOWLIST", code="url_forbidden")
    limit = settings.max_chunk_bytes
    deadline = time.monotonic() + settings.download_timeout_s
    try:
        with httpx.stream(
            "GET", url, timeout=settings.download_timeout_s, follow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise DownloadFailed(f"fetching the chunk URL answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                if len(body) > limit:
                    raise _too_large(limit)
                if time.monotonic() > deadline:
                    raise DownloadFailed(
                        f"fetching the chunk URL took longer than {settings.download_timeout_s:g} s "
                        "(AUDIOFLOW_DOWNLOAD_TIMEOUT_S)"
                    )
            return bytes(body)
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"fetching the chunk URL failed: {type(exc).__name__}") from None


#: ``file:`` chunks up to this size are read in the event loop; larger ones in a thread.
INLINE_READ_BYTES = 1 << 20
#: Downloads at once per gateway process; one more is refused with 503 and Retry-After.
MAX_DOWNLOADS = 8
_downloads = ThreadPoolExecutor(max_workers=MAX_DOWNLOADS, thread_name_prefix="download")
_slots = threading.BoundedSemaphore(MAX_DOWNLOADS)


class DownloadsBusy(Unavailable):
    code = "downloads_busy"


async def fetch_chunk_async(url: str, settings: Settings) -> bytes:
    """:func:`fetch_chunk` in the downloads' own pool, or :class:`DownloadsBusy` when it is full. A
    ``file:`` URL is a bounded local read, not a download that can stall: it takes no download slot, so
    64 senders of ``file:`` URLs are not answered 503 past the eighth."""
    if _scheme(url) == "file":
        target, size = _file_target(url, settings)
        if size <= INLINE_READ_BYTES:  # a page cache read of a few pages: cheaper than a thread hop
            return _read_target(target, settings)
        return await run_in_threadpool(_read_target, target, settings)
    if not _slots.acquire(blocking=False):
        raise DownloadsBusy(f"{MAX_DOWNLOADS} chunk URLs are being fetched already; retry later")
    try:
        return await asyncio.get_running_loop().run_in_executor(_downloads, fetch_chunk, url, settings)
    finally:
        _slots.release()


def _scheme(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise BadRequest(f"url is not a valid URL: {exc}", code="invalid_url") from None


def fetch_chunk(url: str, settings: Settings) -> bytes:
    scheme = _scheme(url)
    if scheme == "file":
        return _read_file(url, settings)
    if scheme in ("http", "https"):
        return _download(url, settings)
    raise BadRequest(f"unsupported URL scheme {scheme!r}: use http, https or file", code="unsupported_url")
