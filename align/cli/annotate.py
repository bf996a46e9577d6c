"""`align annotate` sub-commands (filled in by the annotate issue)."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(help="Human ranking app: serve, import, generate, simulate, export, stats, add-user.", no_args_is_help=True)


@app.callback(invoke_without_command=True)
def _not_yet(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        print("align annotate: not yet implemented", file=sys.stderr)
        raise typer.Exit(1)
