"""One router per resource; mounted once in ``audioflow.api.app``."""
