"""The documentation says only true things: every cited document ships, every API name listed in
docs/api.md exists where it says, every command-line option is explained."""

import argparse
import importlib
import re
from pathlib import Path

import pytest

import nirst_jax
from nirst_jax.cli import build_parser

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _texts():
    sources = [*DOCUMENTS, *sorted((ROOT / "examples").glob("*.py")), *sorted((ROOT / "nirst_jax").rglob("*.py"))]
    return {path.relative_to(ROOT): path.read_text() for path in sources}


def test_documents_cite_only_what_ships():
    for name, text in _texts().items():
        assert "DESIGN §" not in text, f"{name} cites a design document that is not in the repository"
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" in target:
                continue
            assert (document.parent / target).exists(), f"{document.name} links to missing {target}"


def _api_names():
    """(module, dotted name) for every name that opens a list item or table row of docs/api.md."""
    module, names = None, []
    for line in (ROOT / "docs" / "api.md").read_text().splitlines():
        heading = re.match(r"## .*\(`(nirst_jax[\w.]*)`\)", line)
        if heading or line.startswith("## "):
            module = heading.group(1) if heading else ("nirst_jax" if "top-level" in line else None)
            continue
        first = re.match(r"^(?:- |\| )`([A-Za-z_][\w.]*)", line)
        if module and first:
            names.append((module, first.group(1)))
            # Further names listed together at the start: "- `a(x)`, `b`, `c(y)`: ..."
            lead = re.match(r"^(?:- |\| )((?:`[^`]+`(?:, | / | or |; )?)+)", line)
            for span in re.findall(r"`([^`]+)`", lead.group(1))[1:] if lead else ():
                ident = re.match(r"[A-Za-z_][\w.]*", span)
                if ident:
                    names.append((module, ident.group(0)))
    return names


def test_api_reference_lists_only_names_that_exist():
    names = _api_names()
    assert len(names) > 50 and ("nirst_jax.recon", "Reconstructor.create") in names
    for module, name in names:
        parts = name.split(".")
        owner = importlib.import_module(module)
        if parts[0] == "nirst_jax":
            owner, parts = importlib.import_module(".".join(parts[:2])), parts[2:]
        for part in parts:
            assert hasattr(owner, part), f"docs/api.md lists {name} under {module}, which has no {part}"
            owner = getattr(owner, part)
        if module == "nirst_jax":
            assert parts[0] in nirst_jax.__all__, f"{name} is in the top-level table but not in nirst_jax.__all__"


def _subcommands():
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_option_has_help(command):
    parser = _subcommands()[command]
    assert parser.description, f"nirst {command} has no description"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help.strip(), f"nirst {command} {action.option_strings or action.dest} has no help"
