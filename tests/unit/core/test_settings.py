"""Settings from the environment (audioflow.core.settings): parsing, normalising, refusing bad values."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from audioflow.core.settings import Settings, load_settings

pytestmark = pytest.mark.usefixtures("no_env")

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def test_defaults() -> None:
    settings = load_settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.database_url is None
    assert settings.data_dir == Path(".audioflow")
    assert settings.redis_prefix == "af:"
    assert settings.webhook_secret is None
    assert settings.api_token is None
    assert settings.auto_create_meetings is True
    assert settings.max_chunk_bytes == 32 * 1024 * 1024
    assert settings.signature_tolerance_s == 300
    assert settings.ingest_root is None
    assert settings.url_allowlist == ()
    assert settings.stt_engine == "whisper"
    assert settings.whisper_model is None  # the packaged tiny.en
    assert settings.stt_overlap_s is None  # the engine's own: whisper 2 s, pocketsphinx 1 s
    assert settings.fsync is True
    assert settings.log_format == "text"
    assert settings.log_level == "INFO"


def test_environment_is_parsed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "REDIS_URL": "redis://redis.example:6380/2",
        "DATABASE_URL": "sqlite:////var/lib/af.db",
        "AUDIOFLOW_DATA_DIR": str(tmp_path / "data"),
        "AUDIOFLOW_REDIS_PREFIX": "prod:",
        "AUDIOFLOW_WEBHOOK_SECRET": SECRET,
        "AUDIOFLOW_API_TOKEN": "a-token-of-enough-length",
        "AUDIOFLOW_AUTO_CREATE_MEETINGS": "false",
        "AUDIOFLOW_MAX_CHUNK_BYTES": "200000",
        "AUDIOFLOW_SIGNATURE_TOLERANCE_S": "60",
        "AUDIOFLOW_INGEST_ROOT": str(tmp_path / "ingest"),
        "AUDIOFLOW_DOWNLOAD_TIMEOUT_S": "2.5",
        "AUDIOFLOW_FSYNC": "0",
        "AUDIOFLOW_LEASE_MS": "1500",
        "AUDIOFLOW_LOG_FORMAT": "json",
        "AUDIOFLOW_LOG_LEVEL": "DEBUG",
        "AUDIOFLOW_METRICS_PORT": "9100",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.redis_url == "redis://redis.example:6380/2"
    assert settings.database_url == "sqlite:////var/lib/af.db"
    assert settings.effective_database_url == "sqlite:////var/lib/af.db"
    assert settings.data_dir == tmp_path / "data"
    assert settings.redis_prefix == "prod:"
    assert settings.webhook_secret is not None and settings.webhook_secret.get_secret_value() == SECRET
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "a-token-of-enough-length"
    assert SECRET not in repr(settings) and "a-token-of-enough-length" not in repr(settings)
    assert settings.auto_create_meetings is False
    assert settings.max_chunk_bytes == 200_000
    assert settings.signature_tolerance_s == 60
    assert settings.ingest_root == tmp_path / "ingest"
    assert settings.download_timeout_s == 2.5
    assert settings.fsync is False
    assert settings.lease_ms == 1500
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert settings.metrics_port == 9100


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("1", True), ("yes", True), ("FALSE", False)])
def test_booleans(monkeypatch: pytest.MonkeyPatch, text: str, expected: bool) -> None:
    monkeypatch.setenv("AUDIOFLOW_AUTO_CREATE_MEETINGS", text)
    assert load_settings().auto_create_meetings is expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/af", "postgresql+psycopg://u:p@db:5432/af"),
        ("postgresql://u@db/af", "postgresql+psycopg://u@db/af"),
        ("postgresql+psycopg://u@db/af", "postgresql+psycopg://u@db/af"),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
    ],
    ids=["postgres", "postgresql", "psycopg", "sqlite-relative", "sqlite-absolute"],
)
def test_database_url_is_normalised(monkeypatch: pytest.MonkeyPatch, given: str, expected: str) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    settings = load_settings()
    assert settings.database_url == expected
    assert settings.effective_database_url == expected


def test_effective_database_url_defaults_to_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUDIOFLOW_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().effective_database_url == f"sqlite:///{tmp_path / 'data' / 'audioflow.db'}"
    monkeypatch.setenv("DATABASE_URL", "")  # empty means unset
    assert load_settings().effective_database_url == f"sqlite:///{tmp_path / 'data' / 'audioflow.db'}"


def test_relative_data_dir_resolves_against_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    url = load_settings().effective_database_url
    assert url == f"sqlite:///{tmp_path.resolve() / '.audioflow' / 'audioflow.db'}"
    assert url.startswith("sqlite:////")  # absolute: four slashes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("files.example.com", ("files.example.com",)),
        (
            " files.example.com , http://127.0.0.1:8000/chunks/,,https://cdn.example/a ",
            ("files.example.com", "http://127.0.0.1:8000/chunks/", "https://cdn.example/a"),
        ),
        (",", ()),
    ],
    ids=["empty", "one", "several-with-spaces-and-empties", "only-commas"],
)
def test_allowlist_is_split_on_commas(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("AUDIOFLOW_URL_ALLOWLIST", value)
    assert load_settings().url_allowlist == expected


@pytest.mark.parametrize(
    "name", ["AUDIOFLOW_WEBHOOK_SECRET", "AUDIOFLOW_API_TOKEN", "AUDIOFLOW_INGEST_ROOT", "DATABASE_URL"]
)
def test_empty_value_means_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "")
    settings = load_settings()
    field = {
        "AUDIOFLOW_WEBHOOK_SECRET": "webhook_secret",
        "AUDIOFLOW_API_TOKEN": "api_token",
        "AUDIOFLOW_INGEST_ROOT": "ingest_root",  # not Path("."): that would open the working directory
        "DATABASE_URL": "database_url",
    }[name]
    assert getattr(settings, field) is None


def test_webhook_secret_must_be_whsec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOFLOW_WEBHOOK_SECRET", SECRET)
    secret = load_settings().webhook_secret
    assert secret is not None and secret.get_secret_value() == SECRET
    monkeypatch.setenv("AUDIOFLOW_WEBHOOK_SECRET", SECRET.removeprefix("whsec_"))
    with pytest.raises(ValidationError, match="whsec_"):
        Settings()


BAD: list[tuple[str, str, str]] = [
    ("AUDIOFLOW_WEBHOOK_SECRET", "no-prefix-secret", "whsec_"),
    ("AUDIOFLOW_WEBHOOK_SECRET", "whsec_***", "base64"),
    ("AUDIOFLOW_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"short").decode(), "16 bytes"),
    ("DATABASE_URL", "mysql://root@db/af", "postgresql"),
    ("AUDIOFLOW_MAX_CHUNK_BYTES", "lots", "integer"),
    ("AUDIOFLOW_MAX_CHUNK_BYTES", "44", "greater than 44"),
    ("AUDIOFLOW_API_TOKEN", "short", "16"),
    ("AUDIOFLOW_AUTO_CREATE_MEETINGS", "perhaps", "bool"),
    ("AUDIOFLOW_REDIS_PREFIX", "has spaces", "pattern"),
    ("AUDIOFLOW_SIGNATURE_TOLERANCE_S", "0", "greater than or equal to 1"),
    ("AUDIOFLOW_STT_ENGINE", "siri", "pocketsphinx"),
    ("AUDIOFLOW_LOG_FORMAT", "xml", "json"),
    ("AUDIOFLOW_METRICS_PORT", "70000", "65535"),
    ("AUDIOFLOW_DOWNLOAD_TIMEOUT_S", "-1", "greater than 0"),
]


@pytest.mark.parametrize(
    ("name", "value", "problem"), BAD, ids=[f"{name}={value[:12]}" for name, value, _ in BAD]
)
def test_bad_value_exits_2_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        load_settings()
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"audioflow: invalid setting {name}: ")
    assert problem in lines[0]
    assert "pydantic" not in lines[0]  # no link to the library's docs, no traceback


def test_bad_keyword_override_is_named_by_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        load_settings(max_chunk_bytes=10)
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("audioflow: invalid setting AUDIOFLOW_MAX_CHUNK_BYTES: ")


def test_keyword_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIOFLOW_DATA_DIR", "/from/env")
    assert load_settings(data_dir=tmp_path).data_dir == tmp_path


def test_only_the_documented_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Variables named like the fields are common in containers (LOG_LEVEL=debug); they are not ours.
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("DATA_DIR", "/elsewhere")
    monkeypatch.setenv("API_TOKEN", "x")
    monkeypatch.setenv("max_chunk_bytes", "1")
    settings = load_settings()
    assert settings.log_level == "INFO"
    assert settings.data_dir == Path(".audioflow")
    assert settings.api_token is None
    assert settings.max_chunk_bytes == 32 * 1024 * 1024


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.max_chunk_bytes = 1  # type: ignore[misc]
