from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from storage.settings import Settings

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
