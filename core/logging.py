"""structlog configuration with a scrubber that runs on every line.

Personal data and secrets must never reach logs in clear, whatever a developer passes
as a keyword: configured secrets are redacted verbatim and long digit runs (phone
numbers, CPFs) are masked, so a careless `log.info(..., payload=body)` stays safe.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, cast

import structlog
from pydantic import BaseModel

from core.models import mask_phone

_DIGIT_RUN = re.compile(r"\+?\d[\d\s().-]{8,}\d")
# Ids the server generates itself (hex turn ids can contain long digit runs).
_SERVER_IDS = {"timestamp", "level", "turn_id", "request_id", "outbox_id"}
_SENSITIVE_KEYS = {"token", "api_key", "authorization", "client-token", "password", "secret"}


def _mask_digits(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) < 10:
        return match.group(0)
    return mask_phone(digits)


class Scrubber:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, "[REDACTED]")
            return _DIGIT_RUN.sub(_mask_digits, value)
        if isinstance(value, dict):
            return {
                k: "[REDACTED]" if str(k).lower() in _SENSITIVE_KEYS else self.scrub(v)
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.scrub(v) for v in value]
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            return self.scrub(str(value)) if value > 10**9 else value
        if isinstance(value, (bytes, bytearray)):
            return self.scrub(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, BaseModel):
            return self.scrub(value.model_dump(mode="json"))
        # Anything else would be rendered with repr(): scrub that text instead.
        return self.scrub(repr(value))

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        return {k: v if k in _SERVER_IDS else self.scrub(v) for k, v in event_dict.items()}


def configure_logging(*, level: str = "INFO", fmt: str = "console", secrets: Iterable[str] = ()) -> None:
    """Idempotent: the app factory calls it for every app (tests build many)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Scrubber(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiohttp's access log would print query strings (webhook tokens): keep it quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Libraries log through the standard library (asyncio's "Task exception was never
    # retrieved", aiohttp's errors): they go through the same scrubber.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                Scrubber(secrets),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    for chatty in ("openai", "httpx", "httpx2", "httpcore"):  # request-by-request debug noise
        logging.getLogger(chatty).setLevel(max(numeric, logging.INFO))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return cast(structlog.stdlib.BoundLogger, structlog.get_logger(name))
