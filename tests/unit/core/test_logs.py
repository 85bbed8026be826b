"""Log lines never carry credentials, whichever library writes them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from audioflow.core.logs import redact, setup_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, factory = root.handlers[:], root.level, logging.getLogRecordFactory()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(factory)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '127.0.0.1:1 - "WebSocket /v1/meetings/m1/events?token=s3cr3t-tok&since=1-0" [accepted]',
            '127.0.0.1:1 - "WebSocket /v1/meetings/m1/events?token=***&since=1-0" [accepted]',
        ),
        ("authorization: Bearer s3cr3t-tok", "authorization: Bearer ***"),
        ("secret=whsec_abc/def+= then more", "secret=*** then more"),
        ("tokens are counted, no value here", "tokens are counted, no value here"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_every_handler_sees_the_redacted_line(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("api")
    setup_logging("api")  # configuring twice does not stack factories
    captured = io.StringIO()
    extra = logging.StreamHandler(captured)  # like the page forwarder: a second handler
    logging.getLogger().addHandler(extra)
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:9", "/x?token=s3cr3t"
    )
    assert "s3cr3t" not in captured.getvalue() and "token=***" in captured.getvalue()
    assert "s3cr3t" not in capsys.readouterr().err
