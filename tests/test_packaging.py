"""Packaging: every dependency floor in pyproject.toml is the version `.ci/floors` tests."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_floor_is_pinned_in_the_floors_check():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    floors = dict(re.fullmatch(r"([\w.-]+)>=([\w.]+)", r).groups() for r in requirements)
    pins = dict(re.fullmatch(r"([\w.-]+)==([\w.]+)", line).groups()
                for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    assert pins == floors
