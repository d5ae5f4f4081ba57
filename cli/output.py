"""The consoles the commands print on, one-line failures and timestamps."""

from typing import Any

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""
