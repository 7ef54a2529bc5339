"""A section of the reproduction report: text, tables and figures, stored as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._atomic import save_json


@dataclass
class Section:
    """What one experiment reports.

    Attributes:
        key: the experiment's name (its folder and CLI name).
        title: heading in the report.
        text: paragraphs (markdown).
        tables: (caption, markdown table) pairs.
        figures: (caption, path relative to the study folder) pairs.
        numbers: headline values for programmatic checks (JSON-ready).
        inputs: the reconstructions it was computed from (`Study.inputs`): it is reused only
            while they are unchanged.
        code: fingerprint of the experiments' code that wrote it (`EXPERIMENTS_CODE`): a section
            written by other code (new rows, other text) is recomputed from the cached images.
    """

    key: str
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, str]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    code: str = ""

    def save(self, folder) -> None:
        save_json(Path(folder) / "result.json", asdict(self))

    @classmethod
    def load(cls, folder) -> "Section":
        data = json.loads((Path(folder) / "result.json").read_text())
        data["tables"] = [tuple(t) for t in data["tables"]]
        data["figures"] = [tuple(f) for f in data["figures"]]
        return cls(**data)

    def markdown(self, level: int = 2) -> str:
        """The section as markdown (figure paths relative to the study folder)."""
        parts = [f"{'#' * level} {self.title}"]
        parts += self.text
        for caption, table in self.tables:
            parts += [f"**{caption}**", table]
        for caption, path in self.figures:
            parts.append(f"![{caption}]({path})\n\n*{caption}*")
        return "\n\n".join(parts) + "\n"
