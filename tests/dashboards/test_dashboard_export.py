"""``embdrift dashboard export`` writes the shipped files; the repository's dashboards/ is the
same content (one source of truth)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from embdrift.cli import app
from embdrift.cli._dashboard import DASHBOARD_FILES, dashboard_files
from support import REPO

runner = CliRunner()


def test_repo_dashboards_is_the_package_data() -> None:
    shipped = dashboard_files()
    assert set(shipped) == set(DASHBOARD_FILES)
    for rel, content in shipped.items():
        assert (REPO / "dashboards" / rel).read_bytes() == content, rel
    on_disk = {
        p.relative_to(REPO / "dashboards").as_posix()
        for p in (REPO / "dashboards").rglob("*")
        if p.is_file()
    }
    assert on_disk == set(DASHBOARD_FILES)  # nothing in the folder that export leaves out


def test_pyproject_ships_them() -> None:
    text = (REPO / "pyproject.toml").read_text()
    for pattern in ["dashboards/*.yml", "dashboards/rules/*.yml", "dashboards/grafana/*.json"]:
        assert f'"{pattern}"' in text


def test_export_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["dashboard", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for rel, content in dashboard_files().items():
        assert (out / rel).read_bytes() == content
    again = runner.invoke(app, ["dashboard", "export", "--out", str(out)])
    assert again.exit_code == 0, again.output  # identical files: harmless rewrite


def test_export_keeps_edited_files_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert runner.invoke(app, ["dashboard", "export", "--out", str(out)]).exit_code == 0
    edited = out / "rules" / "embdrift.rules.yml"
    edited.write_text("# my edits\n")
    config = out / "prometheus.yml"
    config.unlink()
    result = runner.invoke(app, ["dashboard", "export", "--out", str(out)])
    assert result.exit_code == 2
    assert "rules/embdrift.rules.yml" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert edited.read_text() == "# my edits\n" and not config.exists()  # nothing written
    forced = runner.invoke(app, ["dashboard", "export", "--out", str(out), "--force"])
    assert forced.exit_code == 0
    assert edited.read_bytes() == dashboard_files()["rules/embdrift.rules.yml"]
    assert config.exists()


def test_export_refuses_a_folder_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "prometheus.yml").mkdir()
    result = runner.invoke(app, ["dashboard", "export", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output
