"""A rich progress bar over the steps of a run, a status line, and log lines above it."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """``step`` advances the bar; ``status`` is transient; ``log`` keeps a line."""

    def __init__(self, total: int, console: Console) -> None:
        self.p = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.task = self.p.add_task("starting", total=total, status="")
        self._started = False

    def __enter__(self) -> Progress:
        self.p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.update(self.task, completed=self.p.tasks[0].total, description="done", status="")
        self.p.stop()

    def step(self, text: str) -> None:
        if self._started:
            self.p.advance(self.task)
        self._started = True
        self.p.update(self.task, description=text, status="")
        self.p.console.log(text)

    def status(self, text: str) -> None:
        """A transient status next to the bar."""
        self.p.update(self.task, status=text)

    def log(self, text: str) -> None:
        """A line kept above the bar."""
        self.p.console.log(text)
