"""`align rag` sub-commands (filled in by the rag issue)."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(help="Retrieval-augmented baseline: index a corpus, answer questions.", no_args_is_help=True)


@app.callback(invoke_without_command=True)
def _not_yet(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        print("align rag: not yet implemented", file=sys.stderr)
        raise typer.Exit(1)
