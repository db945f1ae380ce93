"""How the data was prepared, in the run's report: :attr:`DataBundle.notes` (a split by
groups, identical images across splits, ...) as a "Data" section of report.md and
``data_notes`` in summary.json. The loaders log each note when they make it."""

from __future__ import annotations

from typing import Any

from runner.callbacks import Callback
from runner.data.base import DataBundle


class DataNotes(Callback):
    """Adds the data's notes to the summary and the report (nothing when there are none)."""

    def __init__(self, data: DataBundle) -> None:
        self.notes = list(data.notes)

    def on_summary(self, loop: Any, summary: dict[str, Any], test: Any) -> list[str]:
        if not self.notes:
            return []
        summary["data_notes"] = list(self.notes)
        lines = [f"- {note[0].upper()}{note[1:]}." for note in self.notes]
        return ["## Data", "", *lines, ""]
