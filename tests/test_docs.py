"""Every command has help text and a README example; the public API is what __all__ says."""

from __future__ import annotations

import re
from pathlib import Path

import archivekeeper
from archivekeeper.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def command_names() -> list[str]:
    return sorted(info.name or (info.callback.__name__ if info.callback else "") for info in app.registered_commands)


def test_every_command_has_help_and_a_readme_example() -> None:
    names = command_names()
    assert {"init", "import", "query", "stats", "show", "demo"} <= set(names)
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        assert doc and doc.strip(), f"command {name} has no help text"
        assert re.search(rf"archivekeeper (--workspace \S+ )?{name}\b", README), f"README has no example of {name}"


def test_readme_names_the_test_command_ci_runs() -> None:
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "scripts/test" in ci and "scripts/test" in README


def test_all_is_complete_and_importable() -> None:
    for name in archivekeeper.__all__:
        assert hasattr(archivekeeper, name), name
    public = {n for n in vars(archivekeeper) if not n.startswith("_")} - {
        "catalog", "config", "errors", "importer", "models", "workspace", "digests", "surt", "timestamps",
        "warcreader", "progress", "cli",
    }
    public = {n for n in public if not isinstance(getattr(archivekeeper, n), type(archivekeeper))}
    assert public <= set(archivekeeper.__all__), public - set(archivekeeper.__all__)
