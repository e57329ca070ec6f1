"""The sales dashboard's bot and data, shared by its page and browser tests (not
collected: no test_ prefix). The leads are tests/store/analytics_data.py's known
dataset, whose every figure tests/store/test_analytics.py asserts: 50 leads over the two
weeks from Monday 2026-11-16 (São Paulo), so the page's figures are known too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.settings import Settings
from store.base import Store
from store.sqlite import SqliteStore
from tests.conftest import fast_settings
from tests.store.analytics_data import WEEK1, Dataset, known_dataset, write_sqlite

DASHBOARD_TOKEN = "dash-7c41e9b2f0a85d36ee19"
METRICS_TOKEN = "metrics-3f9a0c27d6b14e58aa02"
# The known dataset's two weeks: Monday 16/11 to Sunday 29/11/2026, company time.
KNOWN = {"weeks": "2", "until": "2026-11-29"}
HOSTILE = '<script>alert("utm")</script>'
HOSTILE_REASON = '<img src=x onerror=alert(1)> quer "desconto"'


def dashboard_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"dashboard_token": DASHBOARD_TOKEN, "brl_per_usd": 5.0, **overrides}
    return fast_settings(tmp_path, **values)


def seed_known(store: Store, *, hostile: bool = False) -> None:
    """The known dataset into the app's SQLite store; `hostile` adds, in the week after it,
    a website lead whose UTM campaign and handoff reason are markup."""
    assert isinstance(store, SqliteStore)
    data = known_dataset() if not hostile else Dataset()
    if hostile:
        created = WEEK1 + timedelta(days=14, hours=2)
        lead_id, key = data.add_lead(
            channel="zapi",
            created_at=created,
            temperature="quente",
            utm={"utm_source": "site", "utm_campaign": HOSTILE},
            handoff_at=created + timedelta(minutes=5),
            handoff_reason=HOSTILE_REASON,
        )
        data.received(key, created)
        data.message(lead_id, "in", created)
    write_sqlite(store.db, data)


# Any instant after the data: the page's period comes from `until`, never from now.
LATER = datetime(2026, 12, 3, 15, tzinfo=UTC)

__all__ = [
    "DASHBOARD_TOKEN",
    "HOSTILE",
    "HOSTILE_REASON",
    "KNOWN",
    "LATER",
    "METRICS_TOKEN",
    "dashboard_settings",
    "seed_known",
]
