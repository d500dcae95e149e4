"""``volumes.csv`` with one owner: every change is one appended journal line at once, the CSV is rewritten
at most every few seconds and at the end.

Rewriting a whole table after every image costs O(n) per image (a 10,000-image cohort would rewrite a 6 MB file
20,000 times); a journal line costs O(1) and is on disk before the mask it announces is written, so a killed
run loses nothing: the next run replays the journals onto the CSV before it decides what is done (the existing
rules of :func:`bundle.inference.records.kept_mask_problem`). Each writing process has its own journal
(``.volumes.csv.journal.<writer>``: the parent of a run, or one per ``torchrun`` rank); only the owner writes
the CSV, merges every journal into it and then removes them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from bundle.inference.records import read_table, write_table

__all__ = ["JOURNAL_PREFIX", "ResultTable", "merge_journals", "read_journals"]

logger = logging.getLogger("bundle.inference")

JOURNAL_PREFIX = ".volumes.csv.journal."


def read_journals(folder: Path) -> dict[str, dict]:
    """The rows of every journal in ``folder``, latest last (lines ordered by the time they were written;
    a torn last line, from a process killed while writing it, is ignored)."""
    entries = []
    for journal in sorted(folder.glob(f"{JOURNAL_PREFIX}*")):
        try:
            lines = journal.read_text(errors="replace").splitlines()
        except OSError as e:
            logger.warning(f"warning: {journal}: unreadable journal ({e.strerror}); its rows are not replayed.")
            continue
        for n, line in enumerate(lines):
            try:
                entry = json.loads(line)
                entries.append((float(entry["t"]), journal.name, n, entry["row"]))
            except (ValueError, KeyError, TypeError):
                continue
    return {row["case"]: row for *_, row in sorted(entries, key=lambda e: e[:3])}


def merge_journals(csv_path: Path, rows: dict[str, dict] | None = None) -> str | None:
    """Write ``volumes.csv`` from ``rows`` (default: its own) and every journal beside it, then remove the journals.

    Returns None, or a one-line error naming the file (the journals are then kept: nothing is lost)."""
    table = dict(read_table(csv_path) if rows is None else rows)
    table.update(read_journals(csv_path.parent))
    error = write_table(csv_path, table)
    if error is None:
        for journal in csv_path.parent.glob(f"{JOURNAL_PREFIX}*"):
            journal.unlink(missing_ok=True)
    return error


class ResultTable:
    """The rows of ``volumes.csv`` by case, as one run sees and changes them.

    Args:
        path: the ``volumes.csv``; its rows and those of every journal beside it are read at once.
        writer: this process's journal name (``main``, ``rank3``).
        owner: whether this process writes the CSV (False: journal only; the owner merges later).
        interval: seconds between CSV rewrites (the journal is written at every change).
    """

    def __init__(self, path: Path, writer: str = "main", owner: bool = True, interval: float = 5.0):
        self.path, self.owner, self.interval = path, owner, interval
        self.rows = read_table(path)
        self.rows.update(read_journals(path.parent))
        self.journal = path.with_name(f"{JOURNAL_PREFIX}{writer}")
        self.error: str | None = None  # the last failure to write volumes.csv or the journal, if any
        self._saved = time.monotonic()
        self._dirty = False

    def get(self, case: str) -> dict | None:
        return self.rows.get(case)

    def set(self, case: str, row: dict) -> None:
        """Record ``row`` for ``case``: one journal line now, the CSV within ``interval`` seconds."""
        self.rows[case] = row
        self._dirty = True
        try:
            with self.journal.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"t": time.time(), "row": row}, default=str) + "\n")
        except OSError as e:
            self._fail(f"{self.journal}: cannot write ({e.strerror or e}); a killed run may redo this image.")
        if time.monotonic() - self._saved >= self.interval:
            self.save()

    def save(self) -> None:
        """Rewrite the CSV now (owner only)."""
        if not self.owner or not self._dirty:
            return
        self._fail(write_table(self.path, self.rows))
        self._saved, self._dirty = time.monotonic(), False

    def close(self) -> str | None:
        """The final write: the CSV with every journal merged, the journals removed (owner only; others leave
        their journal to the owner). Returns the last write error, if any."""
        if self.owner:
            self._fail(merge_journals(self.path, self.rows))
        return self.error

    def _fail(self, error: str | None) -> None:
        if error and error != self.error:
            logger.error(f"error: {error}")
        self.error = error
