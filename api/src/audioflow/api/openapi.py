"""The gateway's OpenAPI document, from the app object (no server, no environment).

``python -m audioflow.api.openapi > openapi.json``: the page's TypeScript types are generated from it
(``make frontend``), so the document must not depend on where it is dumped; hence default settings.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from audioflow.api.app import create_app
from audioflow.core.settings import Settings


def openapi_document() -> dict[str, Any]:
    # model_construct: the defaults only, never the environment (which could add or drop routes).
    return create_app(Settings.model_construct()).openapi()


def main() -> None:
    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
