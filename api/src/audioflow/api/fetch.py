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
import functools
import os
import stat
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from starlette.concurrency import run_in_threadpool

from audioflow.core.errors import BadRequest, DownloadFailed, Forbidden, PayloadTooLarge, Unavailable
from audioflow.core.fileio import pread_exact
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


def _file_target(url: str, settings: Settings) -> tuple[str, int]:
    """The regular file a ``file:`` URL names inside the ingest root (its real path, symlinks resolved)
    and its size within the limit.

    The name is looked up once, with ``O_PATH`` (nothing is opened: no device's open, no FIFO's wait),
    and where it really is comes from the kernel (``/proc/self/fd``), not from ``os.path.realpath``,
    which costs a ``lstat`` per folder of the path and a Python loop over them (a tenth of the webhook's
    CPU at a few thousand chunks a second)."""
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
    as_set, base = _roots(root)
    # An absolute path stays itself, a relative one is taken from the root. Checked as written first
    # (under the root as set, or where it really is), so nothing outside is even looked up; then where
    # the file really is, symlinks resolved.
    named = os.path.join(base, raw_path)
    if not _inside(as_set, written := os.path.normpath(named)):
        _check_inside(base, written)
    try:
        fd = os.open(named, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_a_file() from None
    except OSError as exc:  # a name too long, a symlink loop, no permission
        raise _unreadable(exc) from None
    try:
        target = _real_path(fd, named)
        _check_inside(base, target)
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise _not_a_file()
    if info.st_size > settings.max_chunk_bytes:
        raise _too_large(settings.max_chunk_bytes)
    return target, info.st_size


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(os.path.join(base, ""))


def _check_inside(base: str, path: str) -> None:
    if not _inside(base, path):
        raise Forbidden(f"file: URL points outside the ingest root {base!r}", code="url_forbidden")


def _real_path(fd: int, path: str) -> str:
    """Where the file open as ``fd`` (found at ``path``) really is: the kernel's answer where ``/proc``
    is mounted, else ``realpath``'s."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _not_a_file() -> BadRequest:
    return BadRequest("file: URL does not name a regular file under the ingest root", code="url_not_found")


@functools.lru_cache(maxsize=8)
def _roots(root: Path) -> tuple[str, str]:
    """The ingest root as set (absolute) and with its symlinks resolved, once per process: it is the
    server's setting, not the client's input, and resolving it per chunk costs a system call per folder
    of its path."""
    return os.path.abspath(root), os.path.realpath(root)


def _read_target(target: str, size: int, settings: Settings) -> bytes:
    """The file's bytes, bounded by the limit even if it grew since ``size`` was read. The first read
    asks for ``size + 1`` bytes, not the limit: a read of *n* bytes allocates *n* first (32 MiB). A
    plain descriptor, not a file object, which would cost three more system calls."""
    limit = settings.max_chunk_bytes
    try:
        # The real path had no symlink and named a regular file: O_NOFOLLOW and O_NONBLOCK keep a symlink
        # or FIFO put there since from being followed or waited on.
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            # One read: a regular file's read is short only at its end (then the WAV check refuses a
            # chunk truncated meanwhile, as it would refuse one truncated before).
            data = os.pread(fd, size + 1, 0)
            if len(data) > size:  # it grew: read on, up to just past the limit
                data += pread_exact(fd, limit + 1 - len(data), len(data))
        finally:
            os.close(fd)
    except OSError as exc:
        raise _unreadable(exc) from None
    if len(data) > limit:
        raise _too_large(limit)
    return data


def _unreadable(exc: OSError) -> BadRequest:
    """A name too long, a symlink loop, no permission."""
    reason = exc.strerror or type(exc).__name__
    return BadRequest(f"file: URL cannot be read: {reason}", code="url_not_found")


def _read_file(url: str, settings: Settings) -> bytes:
    return _read_target(*_file_target(url, settings), settings)


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
            return _read_target(target, size, settings)
        return await run_in_threadpool(_read_target, target, size, settings)
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
