"""Workspace, settings, dates and URLs: clear one-line errors, and a lock against concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archivekeeper.cli import app
from archivekeeper.errors import ConfigError, WorkspaceError
from archivekeeper.surt import match_range, surt
from archivekeeper.timestamps import parse_user_date
from archivekeeper.workspace import Workspace

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def test_settings_resolution_order(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    assert ws.settings.cutoff == datetime(2023, 1, 1, tzinfo=UTC)
    text = ws.settings_path.read_text().replace('cutoff = "2023-01-01T00:00:00Z"', 'cutoff = "2022-06-01"')
    ws.settings_path.write_text(text)
    assert Workspace.open(ws.root).settings.cutoff == datetime(2022, 6, 1, tzinfo=UTC)
    env = {"ARCHIVEKEEPER_CUTOFF": "2021-01-01", "ARCHIVEKEEPER_WAYBACK_BASE_URL": "http://127.0.0.1:1"}
    from_env = Workspace.open(ws.root, env=env)
    assert from_env.settings.cutoff == datetime(2021, 1, 1, tzinfo=UTC)
    assert from_env.settings.source("wayback").base_url == "http://127.0.0.1:1"
    overridden = Workspace.open(ws.root, env=env, overrides={"cutoff": datetime(2020, 1, 1, tzinfo=UTC)})
    assert overridden.settings.cutoff.year == 2020


@pytest.mark.parametrize("value", ["20x1", "2021-13-01", "yesterday", "2021-02-30", "123"])
def test_bad_dates_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_user_date(value)


def test_dates_and_end_padding() -> None:
    assert parse_user_date("2021").isoformat() == "2021-01-01T00:00:00+00:00"
    assert parse_user_date("2021", end=True).isoformat() == "2021-12-31T23:59:59+00:00"
    assert parse_user_date("2020-02", end=True).isoformat() == "2020-02-29T23:59:59+00:00"
    assert parse_user_date("20210304050607").isoformat() == "2021-03-04T05:06:07+00:00"
    assert parse_user_date("2021-03-04T05:06:07+02:00").isoformat() == "2021-03-04T03:06:07+00:00"


def test_surt_keys_and_ranges() -> None:
    assert surt("http://www.Example.com:80/a/B?z=1&a=2#top") == "com,example)/a/b?a=2&z=1"
    assert surt("https://example.com") == "com,example)/"
    assert surt("example.com:8080/x") == "com,example:8080)/x"
    low, high = match_range("example.com", "domain")
    for key in ("com,example)/", "com,example,news)/a"):
        assert low <= key < high
    for key in ("com,examples)/", "com,exampl)/"):
        assert not low <= key < high
    with pytest.raises(ConfigError):
        surt("http://")


def test_bad_input_gives_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    for args in (["query", "--from", "2021-99"], ["query", "--match", "fuzzy", "--url", "x.org"],
                 ["show", "http://nowhere.example/"], ["init", "--cutoff", "soon"],
                 ["query", "--format", "xml"]):
        result = runner.invoke(app, ["-w", ws, *args])
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output
        assert result.output.count("error:") == 1, (args, result.output)


def test_workspace_that_is_a_file_or_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkspaceError):
        Workspace.open(blocker)
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(WorkspaceError):
            Workspace.open(ro / "ws")
    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(blocker), "stats"])
    assert result.exit_code == 1 and "is a file" in result.output


def test_second_writer_fails_clearly_while_first_holds_the_lock(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from archivekeeper.workspace import Workspace
        with Workspace.open({str(ws.root)!r}).lock():
            print("locked", flush=True)
            time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = subprocess.run([sys.executable, "-m", "archivekeeper", "-w", str(ws.root), "import",
                                 str(REALDATA / "pywb/sample_archive/warcs/example.warc.gz")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "in use by another archivekeeper process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()
    # once the holder is gone, the lock is free again
    with ws.lock():
        pass
