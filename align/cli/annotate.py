"""`align annotate` sub-commands: serve, import, generate, simulate, export, stats, add-user,
remove-user, backup, restore.

Each takes an optional `--config` (configs/annotate_demo.yaml) plus `key.sub=value`
overrides; the common flags (--db, --port, ...) are shorthands for overrides. Bad input
raises AlignInputError (exit 2, one message); nothing here deletes stored data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from align.cli.common import console
from align.config import check_input_paths, load_config
from align.config.annotate import AnnotateConfig
from align.errors import AlignInputError
from align.runner import print_config

app = typer.Typer(
    help="Human ranking app: serve, import, generate, simulate, export, stats, add-user, remove-user, backup, restore.",
    no_args_is_help=True,
)

OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
ConfigOpt = typer.Option(None, "--config", "-c", help="Annotate config YAML (e.g. configs/annotate_demo.yaml).")
DbOpt = typer.Option(None, "--db", help="Database: SQLAlchemy URL or SQLite file path (overrides `db`).")


def _config(config: Optional[Path], ctx: typer.Context, **flags) -> AnnotateConfig:
    """Config file + flags + `key=value` overrides -> validated AnnotateConfig."""
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None] + list(ctx.args)
    return load_config(AnnotateConfig, config, overrides)


def _store(cfg: AnnotateConfig, must_exist: bool = False):
    from annotation_ui.store import Store

    return Store(
        cfg.db, quota=cfg.min_annotations_per_item, lease_seconds=cfg.lease_minutes * 60, must_exist=must_exist
    )


def _check_out(path: Optional[Path], overwrite: bool) -> None:
    """An existing output file is kept unless --overwrite: an earlier export may be all someone has."""
    if path is not None and path.exists() and not overwrite:
        raise AlignInputError(f"{path} already exists; pass --overwrite to replace it, or choose another --out")


OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing --out file.")


def _demo(value: str) -> str:
    """'demo:<size>/<path>' -> the real path (building the world once); other values unchanged."""
    from align.demo import resolve_if_demo_ref

    return resolve_if_demo_ref(value)


@app.command("serve", context_settings=OVERRIDES)
def serve(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    port: Optional[int] = typer.Option(None, help="HTTP port (overrides server.port)."),
    host: Optional[str] = typer.Option(None, help="Interface (overrides server.host; 0.0.0.0 for a team)."),
    ssl_certfile: Optional[str] = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM): serve HTTPS."),
    ssl_keyfile: Optional[str] = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM) of the certificate."),
    trusted_proxies: Optional[str] = typer.Option(
        None,
        "--trusted-proxies",
        help="Comma-separated addresses/networks of reverse proxies in front of the app (server.trusted_proxies): "
        "client addresses are then read from X-Forwarded-For.",
    ),
) -> None:
    """Serve the ranking app (login against the annotators table)."""
    from annotation_ui.app import launch

    flags = {"server.port": port, "server.host": host, "server.ssl_certfile": ssl_certfile}
    if trusted_proxies is not None:
        flags["server.trusted_proxies"] = f"[{trusted_proxies}]"
    cfg = _config(config, ctx, db=db, **flags, **{"server.ssl_keyfile": ssl_keyfile})
    check_input_paths(cfg.server, "server")  # a certificate or key that is not there fails before the launch
    print_config(cfg)
    store = _store(cfg)
    progress = store.overview()
    console.print(
        f"[bold]{progress['items']} items, {progress['rankings']} rankings, quota {cfg.min_annotations_per_item}[/]"
    )
    launch(store, cfg, block=True)


@app.command("import", context_settings=OVERRIDES)
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="JSONL/JSON/CSV/Parquet of {prompt, responses, id?, source_model?}."),
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    source_model: Optional[str] = typer.Option(None, help="Source model recorded for items that name none."),
) -> None:
    """Import items (prompt + candidate responses); a bad file imports nothing."""
    from annotation_ui.io import read_items

    cfg = _config(config, ctx, db=db)
    items = read_items(file, source_model)  # every line checked before the database is touched
    count = _store(cfg).add_items(items)
    console.print(f"[green]imported {count} items[/] from {file} into {cfg.db}")


@app.command("generate", context_settings=OVERRIDES)
def generate(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Model: run dir, path, hub id or demo:<size>/model."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="Prompts file ({prompt} / alpaca / messages rows)."),
    k: Optional[int] = typer.Option(None, "-k", help="Distinct responses per prompt."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the items as JSONL here."),
    do_import: bool = typer.Option(True, "--import/--no-import", help="Import the items into the database."),
    select: Optional[str] = typer.Option(
        None, "--select", help="all, random or uncertainty: which items people get (overrides generate.select)."
    ),
    budget: Optional[int] = typer.Option(None, "--budget", help="Items to keep when selecting."),
    reward_model: Optional[str] = typer.Option(
        None, "--reward-model", help="Reward run (heads >= 2) that select uncertainty asks."
    ),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Sample k distinct responses per prompt from a model (or a pool of pool_k, then keep the
    `budget` items and k responses chosen at random or where the reward model is least sure);
    write and/or import them as items."""
    from align.data.io import read_records
    from align.models import load_causal_lm, load_tokenizer
    from align.precision import precision_scope
    from annotation_ui.generate import distinct_prompts, generate_items
    from annotation_ui.io import write_jsonl
    from annotation_ui.select import select_items, selection_scorer

    flags = {"db": db, "generate.model.name_or_path": model, "generate.prompts": prompts, "generate.k": k}
    flags |= {"generate.select": select, "generate.budget": budget, "generate.reward_model": reward_model}
    cfg = _config(config, ctx, **flags)
    check_input_paths(cfg.generate, str(config or "command line"))  # only generate reads these files
    gen = cfg.generate
    if gen.model is None or gen.prompts is None:
        raise AlignInputError(
            "generate needs a model and prompts: --model RUN_OR_PATH --prompts FILE (or generate.model / generate.prompts)"
        )
    if not do_import and out is None:
        raise AlignInputError("--no-import needs --out FILE, or the candidates would go nowhere")
    _check_out(out, overwrite)
    print_config(cfg)
    model_cfg = gen.model.model_copy(update={"name_or_path": _demo(gen.model.name_or_path)})
    prompts_path = _demo(gen.prompts)
    records = read_records(prompts_path)[: gen.max_prompts]
    scorer = selection_scorer(gen, len(distinct_prompts(records, prompts_path)))  # bad selections fail here
    tokenizer, lm = load_tokenizer(model_cfg), load_causal_lm(model_cfg)
    with precision_scope(model_cfg.precision, model_cfg.dtype):
        result = generate_items(lm, tokenizer, records, gen, source_model=gen.model.name_or_path, source=prompts_path)
        pool = len(result.items)
        result.items = select_items(result.items, gen.select, gen.budget, gen.k, scorer, gen.seed)
    if out is not None:
        write_jsonl(
            (
                {
                    "id": i.external_id,
                    "prompt": i.prompt,
                    "responses": i.responses,
                    "source_model": i.source_model,
                    "meta": i.meta,
                }
                for i in result.items
            ),
            out,
        )
    if do_import:
        _store(cfg).add_items(result.items)
    console.print(
        f"[green]{len(result.items)} items[/] from {result.prompts} prompts "
        f"({result.short} with fewer than {gen.responses_sampled} distinct responses, {result.dropped} dropped with < 2)"
        + (f"; selected by {gen.select} from a pool of {pool}" if gen.select != "all" else "")
        + (f"; written to {out}" if out else "")
        + (f"; imported into {cfg.db}" if do_import else "")
    )


@app.command("simulate", context_settings=OVERRIDES)
def simulate(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    world: Optional[str] = typer.Option(
        None, help="Demo world: demo:demo/world.json, demo:tiny/world.json or a folder."
    ),
    annotators: Optional[int] = typer.Option(None, help="Number of simulated annotators."),
    noise: Optional[float] = typer.Option(None, help="Gaussian noise on gold scores."),
) -> None:
    """Rank items with simulated annotators (the demo world's gold preference + noise)."""
    from annotation_ui.simulate import ensure_annotators, gold_ranker
    from annotation_ui.simulate import simulate as run_simulation

    cfg = _config(
        config, ctx, db=db, **{"simulate.world": world, "simulate.annotators": annotators, "simulate.noise": noise}
    )
    sim = cfg.simulate
    ranker = gold_ranker(_demo(sim.world))
    store = _store(cfg)
    names = ensure_annotators(store, sim.annotators)
    result = run_simulation(store, ranker, names, sim.noise, sim.seed, sim.max_rankings)
    overview = store.overview()
    console.print(
        f"[green]{result.rankings} simulated rankings[/] by {len(names)} annotators; "
        f"{overview['items_complete']} of {overview['items']} items complete"
    )


@app.command("export", context_settings=OVERRIDES)
def export(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    format: Optional[str] = typer.Option(None, "--format", help="rankings or pairs."),
    aggregate: Optional[bool] = typer.Option(
        None, "--aggregate/--raw", help="One ranking per item, or one per annotator."
    ),
    method: Optional[str] = typer.Option(None, help="Aggregation: mean_rank or bradley_terry."),
    out: Path = typer.Option(..., "--out", help="Output JSONL file."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Export rankings (docs/design.md format) or {prompt, chosen, rejected} pairs as JSONL."""
    from annotation_ui.io import export_pairs, export_rankings, write_jsonl

    cfg = _config(
        config, ctx, db=db, **{"export.format": format, "export.aggregate": aggregate, "export.method": method}
    )
    ex = cfg.export
    _check_out(out, overwrite)
    if ex.format == "pairs":
        rows = export_pairs(cfg.db, aggregate=ex.aggregate, method=ex.method, min_rankings=ex.min_rankings)
    else:
        rows = export_rankings(cfg.db, aggregate=ex.aggregate, method=ex.method, min_rankings=ex.min_rankings)
    write_jsonl(rows, out)
    kind = "aggregated" if ex.aggregate else "per-annotator"
    console.print(f"[green]wrote {len(rows)} {ex.format} rows[/] ({kind}) to {out}")


@app.command("stats", context_settings=OVERRIDES)
def stats(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for stats.json, report.md and a chart."),
) -> None:
    """Progress, inter-annotator agreement (pairwise, Kendall tau-b, Krippendorff alpha)."""
    from rich.table import Table

    from annotation_ui.stats import collect, headline, write_report

    cfg = _config(config, ctx, db=db)
    figures = collect(_store(cfg, must_exist=True))
    table = Table(title="align annotate: stats")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in headline(figures).items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    people = Table(title="annotators")
    for column in ("annotator", "role", "done", "superseded", "skipped"):
        people.add_column(column)
    for name, values in figures["annotators"].items():
        people.add_row(name, values["role"], str(values["done"]), str(values["superseded"]), str(values["skipped"]))
    console.print(people)
    if out is not None:
        console.print(f"report: {write_report(figures, out)}")


@app.command("add-user", context_settings=OVERRIDES)
def add_user(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Login name."),
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    password: Optional[str] = typer.Option(
        None, help="Password (at least 8 characters); asked for, twice and hidden, when not given."
    ),
    role: str = typer.Option("annotator", help="annotator or admin."),
    replace: bool = typer.Option(
        False, "--replace", help="Set a new password/role for an existing user; ends their open sessions."
    ),
) -> None:
    """Create an annotator (or admin) account, or with --replace reset one (its sessions end)."""
    cfg = _config(config, ctx, db=db)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    _store(cfg).add_annotator(name, password, role=role, replace=replace)
    console.print(f"[green]{'updated' if replace else 'added'} {role} {name!r}[/] in {cfg.db}")


@app.command("remove-user", context_settings=OVERRIDES)
def remove_user(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Login name."),
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Stop an account: no more logins, its open sessions end (within a second); its rankings stay.
    `add-user NAME --replace` lets it back in with a new password."""
    cfg = _config(config, ctx, db=db)
    _store(cfg, must_exist=True).disable_annotator(name)
    console.print(f"[green]removed {name!r}[/] from {cfg.db}: no more logins; the rankings stay")


@app.command("backup", context_settings=OVERRIDES)
def backup(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
    out: Path = typer.Option(..., "--out", help="The backup file to write (a SQLite database file)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Copy the annotation database to a file, consistently, while the server keeps running."""
    from annotation_ui.backup import backup as take_backup

    cfg = _config(config, ctx, db=db)
    _say_copied("backed up", take_backup(cfg.db, out, overwrite=overwrite), f"to {out}")


@app.command("restore", context_settings=OVERRIDES)
def restore(
    ctx: typer.Context,
    backup_file: Path = typer.Argument(..., help="A file written by `align annotate backup`."),
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Restore a backup into a new, empty database (SQLite or PostgreSQL)."""
    from annotation_ui.backup import restore as restore_backup

    cfg = _config(config, ctx, db=db)
    _say_copied("restored", restore_backup(backup_file, cfg.db), f"into {cfg.db}")


def _say_copied(verb: str, counts: dict[str, int], where: str) -> None:
    console.print(
        f"[green]{verb}[/] {counts['rankings']} rankings of {counts['items']} items by {counts['annotators']} "
        f"annotators {where}",
        soft_wrap=True,
    )
