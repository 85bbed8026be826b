"""The work-item codec: what the gateway encodes, the workers decode to the same item."""

from __future__ import annotations

import pytest

from audioflow.core.errors import InvalidId
from audioflow.core.work_item import WorkItem


def test_fields_round_trip() -> None:
    for item in (WorkItem("m-1", 7, "1712345678901234"), WorkItem("m-1", 0)):
        assert WorkItem.decode(item.fields()) == item


def test_bad_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        WorkItem.decode({"meeting_id": "m", "seq": "1", "generation": "x"})
    with pytest.raises(InvalidId):
        WorkItem.decode({"meeting_id": "", "seq": "1"})
