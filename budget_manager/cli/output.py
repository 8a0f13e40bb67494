"""How commands print: on a terminal, tables drawn by ``rich`` (aligned plain text without
it); piped, a tab-separated table with a header line; with ``--json``, JSON. Money is always an
exact decimal string, times ISO 8601 UTC. Progress bars go to stderr, on a terminal only."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import IO, Any

from ..money import to_text
from ..operations import Progress


def money(amount: Decimal | None) -> str:
    """An amount as an exact decimal string, without trailing zeros ("" for none)."""
    if amount is None:
        return ""
    text = to_text(amount)
    return text.rstrip("0").rstrip(".") if "." in text else text


def moment(epoch: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC, to the second ("" for none)."""
    if epoch is None:
        return ""
    at = datetime.fromtimestamp(epoch, timezone.utc).replace(microsecond=0)
    return at.isoformat().replace("+00:00", "Z")


def _rich() -> Any:
    """The rich package, or None on a plain install (the [cli] extra brings it)."""
    try:
        import rich.console
        import rich.progress
        import rich.table
    except ImportError:
        return None
    return rich


class Output:
    """Where a command's results go (stdout), in the form the operator asked for."""

    def __init__(self, as_json: bool = False, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.as_json = as_json
        self.terminal = not as_json and self.stream.isatty()
        self.rich = _rich() if self.terminal else None
        self._tables = 0

    def json(self, data: Any) -> None:
        """Print ``data`` as JSON (Decimals as exact strings)."""
        json.dump(data, self.stream, indent=2, default=_exact, ensure_ascii=False)
        self.stream.write("\n")

    def message(self, text: str) -> None:
        """One line for the operator (JSON prints ``{"message": text}``)."""
        if self.as_json:
            self.json({"message": text})
        else:
            print(text, file=self.stream)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        title: str | None = None,
        styles: Sequence[str | None] | None = None,
    ) -> None:
        """A table of text cells (JSON: a list of objects keyed by column); ``styles``: a rich
        style per row, used on a terminal only."""
        self._tables += 1
        if self.as_json:
            self.json([dict(zip(columns, row, strict=True)) for row in rows])
            return
        if self._tables > 1:
            print(file=self.stream)  # a blank line between tables
        if self.rich is not None:
            table = self.rich.table.Table(title=title, title_justify="left")
            for name in columns:
                numeric = rows and all(_numeric(row[columns.index(name)]) for row in rows)
                table.add_column(name, justify="right" if numeric else "left")
            for n, row in enumerate(rows):
                table.add_row(*row, style=styles[n] if styles else None)
            self.rich.console.Console(file=self.stream).print(table)
        elif self.terminal:
            if title:
                print(title, file=self.stream)
            widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
            for row in (columns, *rows):
                line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                print(line.rstrip(), file=self.stream)
        else:
            for row in (columns, *rows):
                print("\t".join(_cell(c) for c in row), file=self.stream)

    @contextlib.contextmanager
    def progress(self, what: str) -> Iterator[Progress]:
        """A ``progress(done, total)`` callback: a rich bar on a terminal's stderr, else
        nothing."""
        rich = _rich() if sys.stderr.isatty() else None
        if rich is None:
            yield _nothing
            return
        console = rich.console.Console(stderr=True)
        with rich.progress.Progress(console=console, transient=True) as bar:
            task = bar.add_task(what, total=None)

            def update(done: int, total: int) -> None:
                if done == total or done % 1000 == 0:
                    bar.update(task, completed=done, total=total)

            yield update


def _nothing(done: int, total: int) -> None:
    """No progress shown."""


def _numeric(cell: str) -> bool:
    return cell.lstrip("$-").replace(".", "", 1).isdigit()


def _cell(text: str) -> str:
    # A tab or newline inside a cell would break the row apart.
    return text.replace("\t", " ").replace("\n", " ")


def _exact(value: object) -> str:
    if isinstance(value, Decimal):
        return to_text(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
