"""`provisioner demo` tells the whole copy story and succeeds on a fresh machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli.main import cli


def test_demo_runs_the_story_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROVISIONER_DATABASE_URL", raising=False)
    # the demo points the process at its own home: restore ours afterwards
    monkeypatch.setenv("PROVISIONER_HOME", str(tmp_path))
    monkeypatch.setenv("PROVISIONER_MASTER_KEY", "")
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Traceback" not in out
    for step in range(10):
        assert f"== {step}." in out
    # the plan shows what the template does to さくら通販's records
    assert "records affected (3 blocking the approval)" in out
    assert "value 'phone' of picklist 'activity_kind' is removed but 3 records hold it" in out
    # a plain approval is refused, the remapped one goes through
    assert "would strand data" in out
    assert "activity_kind.phone -> phone_inquiry: 3 activities rewritten" in out
    assert "aoba-fudosan is at version 3" in out
    # the copied rules: paused on arrival, dry-run, activated, then they run
    assert "complaint_follow_up  paused" in out
    assert "rules fired: complaint_follow_up, vip_on_premium" in out
    assert "checkboxes now VIP 要フォロー" in out
    # the partner improves its template; さくら通販 upgrades and keeps its own labels
    assert "kept  (changed only here):           memo_fields.3.label, checkboxes.9.label" in out
    assert "conflicts: 0" in out
    assert "checkbox 9 'DM送付停止', memo 3 '初回購入日' (kept)" in out
    assert "The demo database was removed." in out
