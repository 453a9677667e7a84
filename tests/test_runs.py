"""Run folders: outputs are moved aside under ``.replaced/``, never deleted."""

from __future__ import annotations

from pathlib import Path

from policyshare.experiment import force_stage
from policyshare.runs import move_aside


def test_move_aside_keeps_every_copy(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "run", tmp_path / "b" / "run"
    for folder, text in ((first, "first"), (second, "second")):
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(text)
    one = move_aside(first, tmp_path)
    two = move_aside(second, tmp_path)  # same name, most likely the same second
    assert not first.exists() and not second.exists() and one != two
    assert one.parent == two.parent == tmp_path / ".replaced" and one.name.endswith("-run")
    assert (one / "meta.json").read_text() == "first" and (two / "meta.json").read_text() == "second"


def test_force_stage_moves_that_stage_and_the_later_ones_aside(tmp_path: Path) -> None:
    for name in ("experts", "distill", "transfer", "vision", "vision_trunks", "plots"):
        (tmp_path / name).mkdir()
    (tmp_path / "report.md").write_text("old report")
    moved = force_stage(tmp_path, "vision")
    assert sorted(p.name.split("-", 2)[2] for p in moved) == ["plots", "report.md", "vision", "vision_trunks"]
    assert all(p.parent == tmp_path / ".replaced" and p.exists() for p in moved)
    assert [p.name for p in sorted(tmp_path.iterdir()) if p.name != ".replaced"] == ["distill", "experts", "transfer"]
