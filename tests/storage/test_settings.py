from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from storage.settings import Settings, explain

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set()
    assert documented - fields == {"ANTHROPIC_BASE_URL"}  # read by the anthropic SDK itself


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.database_url == "sqlite+aiosqlite:///supportbot.db"
    assert s.refund_limit == Decimal("150.00") and s.refund_limit_cents == 15000
    assert s.return_window_days == 30
    assert s.resolved_model_provider == "offline"


def test_environment_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFUND_LIMIT", "99.50")
    monkeypatch.setenv("SUPPORT_CHANNELS", "C1, C2,,")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.refund_limit_cents == 9950
    assert s.support_channels == ["C1", "C2"]
    assert s.resolved_model_provider == "claude"
    assert s.slack_api_url.endswith("/api/")
    assert "sk-test" not in repr(s)  # secrets never show up in logs of the settings object


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETURN_WINDOW_DAYS", raising=False)
    (tmp_path / ".env").write_text("RETURN_WINDOW_DAYS=14\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().return_window_days == 14


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="refund_limit"):
        Settings(_env_file=None, refund_limit="-1")  # type: ignore[call-arg]


def test_a_copied_env_example_is_all_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    monkeypatch.chdir(tmp_path)
    assert Settings().model_dump() == Settings(_env_file=None).model_dump()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("log_level", "LOUD", "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'LOUD')"),
        ("database_url", "garbage", "DATABASE_URL is not a database URL; supported: SQLite"),
        ("database_url", "mysql://u:hunter2@db/x", "DATABASE_URL is a mysql URL, which supportbot does not support"),
        ("refund_limit", "-1", "REFUND_LIMIT: Input should be greater than or equal to 0 (got '-1')"),
    ],
)
def test_bad_settings_are_explained_on_one_line(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(_env_file=None, **{field: value})  # type: ignore[arg-type]
    text = explain(err.value)
    assert text.startswith(message) and "\n" not in text and "hunter2" not in text


def test_log_level_is_case_insensitive() -> None:
    assert Settings(_env_file=None, log_level="warning").log_level == "WARNING"  # type: ignore[call-arg]
