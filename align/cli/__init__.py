"""`align` command line: `align <stage> --config FILE [key.sub=value ...]`.

Exit codes: 0 success, 2 bad input, 3 a run that failed (e.g. a diverged training step), each
with one message and no traceback; 1 a bug (traceback). See align.errors.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from align import runner
from align.cli.common import build_config, console
from align.distributed import release_shared_memory_at_exit
from align.errors import (
    EXIT_BAD_INPUT,
    EXIT_RUN_FAILED,
    OUT_OF_MEMORY_ADVICE,
    AlignInputError,
    AlignRunError,
    out_of_memory,
)
from align.quiet import quiet_third_party
from align.runner import run_stage

app = typer.Typer(
    help="align: SFT -> human rankings -> reward model -> PPO / GRPO / RLOO / DPO, evaluated side by side on QA "
    "sets and public benchmarks, plus a RAG baseline. "
    "Each stage: `align <stage> --config FILE.yaml \\[key.sub=value ...]` (configs/ holds one per stage); "
    "--verbose anywhere on the line also prints the resolved config at the start and every metric at the end.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file (see configs/).")
ResumeOption = typer.Option(False, "--resume", help="Continue from the newest complete checkpoint in output_dir.")
OverwriteOption = typer.Option(False, "--overwrite", help="Move an existing run dir aside and start fresh.")


def _stage_command(stage: str, summary: str):
    def command(
        ctx: typer.Context,
        config: Optional[Path] = ConfigOption,
        resume: bool = ResumeOption,
        overwrite: bool = OverwriteOption,
    ) -> None:
        if config is None:
            raise AlignInputError(f"align {stage} needs --config FILE (e.g. configs/{stage}_demo.yaml)")
        run_stage(stage, build_config(stage, config, ctx.args, resume=resume, overwrite=overwrite))

    command.__doc__ = summary + "\n\nExtra arguments `key.sub=value` override the config."
    return command


@app.command("sft", context_settings=OVERRIDES)
def sft(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOption,
    resume: bool = ResumeOption,
    overwrite: bool = OverwriteOption,
) -> None:
    """Instruction fine-tuning (full, partial, LoRA, QLoRA, prompt/prefix tuning).

    Extra arguments `key.sub=value` override the config. `align sft merge RUN_DIR [OUT_DIR]`
    folds a LoRA run's adapter into a full model (default RUN_DIR/final-merged).
    """
    if config is None and ctx.args[:1] == ["merge"]:
        if len(ctx.args) not in (2, 3):
            raise AlignInputError("usage: align sft merge RUN_DIR [OUT_DIR]")
        from align.sft.export import merge_adapter

        out = merge_adapter(ctx.args[1], Path(ctx.args[2]) if len(ctx.args) == 3 else None)
        console.print(f"[bold green]merged model written to[/] {out}")
        return
    _stage_command("sft", "")(ctx, config, resume, overwrite)


for _stage, _summary in {
    "reward": "Train a reward model on rankings or preference pairs (Bradley-Terry or Plackett-Luce; one head or "
    "an ensemble).",
    "dpo": "Tune the SFT model on rankings or pairs directly (DPO, IPO, ... or KTO), no reward model.",
    "ppo": "Online RL of the SFT policy (PPO, GRPO or RLOO) against a reward model, rules or your functions, "
    "with a KL penalty.",
    "eval": "Evaluate several systems (base, SFT, each method, RAG) side by side on QA sets and public benchmarks.",
}.items():
    app.command(_stage, context_settings=OVERRIDES)(_stage_command(_stage, _summary))


@app.command("pipeline", context_settings=OVERRIDES)
def pipeline(
    ctx: typer.Context,
    config: Path = typer.Option(Path("configs/pipeline_demo.yaml"), "--config", "-c", help="Pipeline config."),
    resume: bool = typer.Option(False, "--resume", help="Skip finished stages; resume an interrupted one."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Run the whole chain: SFT -> candidates -> annotation -> reward -> methods -> eval, on the demo world or your data."""
    run_stage("pipeline", build_config("pipeline", config, ctx.args, resume=resume, overwrite=overwrite))


@app.command("chat")
def chat(
    models: list[str] = typer.Argument(..., help="Run dirs, model folders, .gguf files, hub ids or models:<name>."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Longest answer, in tokens."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="0: greedy (the same answer every time)."),
    top_p: float = typer.Option(0.9, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass."),
    system: Optional[str] = typer.Option(None, "--system", help="A system prompt to start with."),
    ui: bool = typer.Option(False, "--ui", help="A page in the browser instead; with two models, votes on answers."),
    votes: Path = typer.Option(
        Path("runs/chat/votes.jsonl"), "--votes", help="--ui: where votes go, as rankings align reward reads."
    ),
    port: int = typer.Option(7861, "--port", help="--ui: the page's port on 127.0.0.1."),
) -> None:
    """Talk to models in the terminal (their chat templates, streamed); several answer side by side.
    /reset, /system TEXT, /quit. --ui: the same in a browser page, with a vote between two models."""
    from align.chat import chat_loop, load_chatter
    from align.precision import precision_scope

    names = [Path(m.rstrip("/")).name or m for m in models]
    names = [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]
    with precision_scope("auto"):
        chatters = [load_chatter(n, m, max_new_tokens, temperature, top_p) for n, m in zip(names, models)]
        for chatter in chatters:
            chatter.reset(system or "")
        if ui:
            from align.chat_ui import VoteFile, launch

            console.print(f"align chat page on http://127.0.0.1:{port} (votes -> {votes}); Ctrl+C stops it")
            launch(chatters, VoteFile(votes), port)
            return
        chat_loop(chatters)


@app.command("demo")
def demo(
    size: str = typer.Option("demo", help="'demo' (the full demo world) or 'tiny' (for tests)."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same world, byte for byte."),
    force: bool = typer.Option(False, help="Rebuild even if a cached world exists."),
    out: Optional[Path] = typer.Option(None, help="Where to build (default: the cache, $ALIGN_CACHE/worlds/...)."),
    pretrain: bool = typer.Option(
        False,
        help="Pre-train the base model from scratch (~10 min on 2 CPU cores) even where the package ships "
        "its weights (the default world); rebuilds a cached world.",
    ),
) -> None:
    """Build the demo world: knowledge base, corpus, tasks, gold preference, RAG docs and a pre-trained tiny model."""
    if size not in ("demo", "tiny"):
        raise AlignInputError(f"--size must be 'demo' or 'tiny', not {size!r}")
    from align.demo import build_world

    root = build_world(size=size, seed=seed, root=out, force=force or pretrain, pretrain=pretrain)
    console.print(f"[bold green]demo world ready:[/] {root}")
    for name in ("world.json", "corpus.txt", "sft", "preference", "rag", "model"):
        console.print(f"  {name:<12} {root / name}")


@app.command("export")
def export(
    run_dir: str = typer.Argument(..., help="A run dir, its final/, a model folder or a .gguf file."),
    format: str = typer.Option("gguf", "--format", help="Output format (gguf)."),
    dtype: str = typer.Option("f16", "--dtype", help="f32, f16, bf16 or q8_0 (matrices; norms stay f32)."),
    out: Path = typer.Option(..., "--out", help="The .gguf file to write; an Ollama Modelfile is written beside it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Export a model for llama.cpp / Ollama / LM Studio (LoRA runs are merged first)."""
    if format != "gguf":
        raise AlignInputError(
            f"--format {format!r}: align exports 'gguf' (a run's final/ is already a safetensors folder)"
        )
    from align.gguf.export import export_run

    gguf_file, modelfile = export_run(run_dir, out, dtype=dtype, overwrite=overwrite)
    size = gguf_file.stat().st_size / 2**20
    console.print(f"[bold green]wrote[/] {gguf_file} ({size:.1f} MiB, {dtype}) and {modelfile}", soft_wrap=True)
    console.print(
        f"  run it: cd {gguf_file.parent} && ollama create my-model -f {modelfile.name} && ollama run my-model",
        soft_wrap=True,
    )


@app.command("env")
def env(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="An annotate or pipeline config: also check that its database answers."
    ),
    db: Optional[str] = typer.Option(None, "--db", help="An annotation database URL or SQLite file to check."),
) -> None:
    """Versions, torch build and devices, DeepSpeed, the cache: paste this into a bug report."""
    from align.environment import as_text, environment_report

    if config is not None and db is None:
        db = _database_of(config)
    print(as_text(environment_report(db)))


def _database_of(config_path: Path) -> str:
    """The annotation database an annotate config (`db`) or pipeline config (its output dir) uses."""
    from align.config import read_yaml

    data = read_yaml(config_path)
    if data.get("db"):
        return str(data["db"])
    output_dir = (data.get("output") or {}).get("output_dir")
    if "annotation" in data and output_dir:
        return str(Path(output_dir) / "annotations.db")
    raise AlignInputError(f"{config_path}: names no annotation database (an annotate config's `db`); use --db URL")


def _register_subapps() -> None:
    """Stage groups with their own sub-commands live in their own modules."""
    from align.cli import annotate, data, models, rag

    app.add_typer(annotate.app, name="annotate")
    app.add_typer(data.app, name="data")
    app.add_typer(models.app, name="models")
    app.add_typer(rag.app, name="rag")


_register_subapps()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry and the one exit point: usage errors and AlignInputError exit 2,
    AlignRunError and running out of memory exit 3, each without a traceback."""
    # the `deepspeed` launcher inserts --local_rank=N before the command; ranks come from the environment
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("--local_rank")]
    if "--verbose" in argv or "-v" in argv:  # anywhere on the line: stage options pass unknown flags through
        runner.VERBOSE = True
        argv = [a for a in argv if a not in ("--verbose", "-v")]
    quiet_third_party()
    release_shared_memory_at_exit()
    try:
        app(args=argv)  # standalone: click prints usage errors itself and exits 2
    except AlignInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except AlignRunError as exc:
        print(f"run failed: {exc}", file=sys.stderr)
        sys.exit(EXIT_RUN_FAILED)
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        print(f"run failed: out of memory ({first}); {OUT_OF_MEMORY_ADVICE}", file=sys.stderr)
        sys.exit(EXIT_RUN_FAILED)
