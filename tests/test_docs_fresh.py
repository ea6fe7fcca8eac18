"""docs/events.md and docs/event-metrics.md are generated (agent/docs_render.py): the committed files
must equal a fresh render, and the render must cover every catalog event and every table metric."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from agent.__main__ import main
from agent.docs_render import DOCS, REGENERATE, render_event_metrics, render_events
from agent.events.catalog import CATALOG
from agent.events.metric_table import TABLE

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("name", sorted(DOCS))
def test_committed_doc_equals_a_fresh_render(name: str) -> None:
    path = DOCS_DIR / name
    assert path.is_file(), f"docs/{name} is missing: run `{REGENERATE}`"
    committed, fresh = path.read_text(encoding="utf-8"), DOCS[name]()
    if committed != fresh:
        diff = difflib.unified_diff(committed.splitlines(), fresh.splitlines(), f"docs/{name} (committed)",
                                    f"docs/{name} (rendered)", lineterm="", n=1)
        pytest.fail(f"docs/{name} is stale: run `{REGENERATE}`\n" + "\n".join(list(diff)[:40]))


def test_render_is_deterministic() -> None:
    assert render_events() == render_events()
    assert render_event_metrics() == render_event_metrics()


def test_events_doc_has_a_section_per_catalog_event() -> None:
    text = render_events()
    missing = [name for name in CATALOG if f"\n### `{name}`\n" not in text]
    assert missing == []


def test_metrics_doc_names_every_table_metric_as_exposed() -> None:
    text = render_event_metrics()
    for emit in TABLE:
        exposed = emit.metric + "_total" if emit.kind == "counter" else emit.metric
        assert f"| `{exposed}` |" in text, exposed


def test_cli_check_names_the_stale_file_and_render_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name, render in DOCS.items():
        (tmp_path / name).write_text(render(), encoding="utf-8")
    stale = tmp_path / "event-metrics.md"
    stale.write_text("old\n", encoding="utf-8")
    assert main(["render-docs", "--check", "--docs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(stale) in err and REGENERATE in err and "events.md:" not in err.replace("event-metrics.md:", "")
    assert main(["render-docs", "--docs-dir", str(tmp_path)]) == 0
    assert str(stale) in capsys.readouterr().out
    assert main(["render-docs", "--check", "--docs-dir", str(tmp_path)]) == 0
