"""The pipeline's steps, in one table (`STEPS`): each step's name, its typical share of the
demo pipeline's wall time (for the ETA), and how it runs.

A stage step runs an align stage from its own YAML (`pipeline.<step>.config` + overrides),
*wired* to the pipeline: the stage writes under the pipeline dir and reads the previous
stage's output, so a stage file that names `runs/sft-demo` still works inside the pipeline.
The other steps (world, candidates, annotation) are functions of the run context. Every
step returns the outputs the pipeline records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from align.config import STAGE_CONFIGS, apply_overrides, check_input_paths, read_yaml, resolve_demo_refs, validate
from align.config.common import ModelConfig, Section
from align.config.pipeline import PipelineConfig, StageSpec
from align.errors import AlignInputError
from align.rundir import RunResult
from align.runner import run_stage


class AnnotationPending(Exception):
    """Human annotation has not reached its quota yet; the message says what to run."""


@dataclass
class Context:
    config: PipelineConfig
    root: Path
    world: Path | None = None
    resuming_wait: bool = False  # the run stopped for human rankings before and is resumed now

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    @property
    def db_url(self) -> str:
        return f"sqlite:///{(self.root / 'annotations.db').resolve()}"

    @property
    def rankings_file(self) -> Path:
        return self.root / "annotation" / "rankings.jsonl"


Wiring = Callable[[dict[str, Any], Context], None]


SEED_KEY = {"sft": "training.seed", "reward": "training.seed", "dpo": "training.seed", "ppo": "schedule.seed"}


def stage_config(step: str, ctx: Context, wire: Wiring | None = None, stage: str | None = None) -> Section:
    """pipeline.<step>: the YAML + overrides of an align stage (`stage`, default the step's name),
    wired to the pipeline's dirs and validated (demo refs unresolved: preflight validates before
    the world exists)."""
    stage = stage or step
    spec: StageSpec = getattr(ctx.config, step)
    data = apply_overrides(read_yaml(spec.config), spec.overrides)
    if ctx.config.training_seed is not None and stage in SEED_KEY:
        data = apply_overrides(data, [f"{SEED_KEY[stage]}={ctx.config.training_seed}"])
    if wire is not None:
        wire(data, ctx)
    out = ctx.stage_dir(step)
    data["output"] = {
        **data.get("output", {}),
        "output_dir": str(out),
        "overwrite": False,
        # an interrupted stage resumes from its own newest checkpoint
        "resume": "auto" if out.is_dir() and any(out.iterdir()) else "never",
    }
    source = f"{spec.config} (pipeline stage '{step}')"
    config = validate(STAGE_CONFIGS[stage], data, source)
    check_input_paths(config, source)
    return config


def outputs_of(result: RunResult) -> dict[str, Any]:
    return {
        "run_dir": str(result.run_dir),
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))},
    }


# -- world -------------------------------------------------------------------------------
def world(ctx: Context) -> dict[str, Any]:
    from align.demo import build_world

    ctx.world = build_world(size=ctx.config.world, seed=ctx.config.seed)
    return {"world": str(ctx.world)}


# -- candidates ----------------------------------------------------------------------------
def candidates(ctx: Context) -> dict[str, Any]:
    """k sampled responses per preference prompt from the SFT model, stored as annotation items."""
    from align.config.annotate import GenerateConfig
    from align.data import read_records
    from align.models import load_causal_lm, load_tokenizer
    from annotation_ui.generate import generate_items
    from annotation_ui.store import Store

    settings = ctx.config.candidates
    store = Store(ctx.db_url, quota=ctx.config.annotation.min_annotations_per_item)
    if store.item_ids():  # an interrupted step already stored them (one transaction)
        return {"db": ctx.db_url, "items": len(store.item_ids()), "reused": True}
    prompts_path = Path(settings.prompts)
    if not prompts_path.is_absolute() and ctx.world is not None and not prompts_path.exists():
        prompts_path = ctx.world / prompts_path
    records = read_records(prompts_path)[: settings.max_prompts]
    model_config = ModelConfig(name_or_path=str(ctx.stage_dir("sft")))
    model, tokenizer = load_causal_lm(model_config), load_tokenizer(model_config)
    generate = GenerateConfig(
        k=settings.k,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    result = generate_items(model, tokenizer, records, generate, source_model="sft", source=str(prompts_path))
    if not result.items:
        raise AlignInputError(
            f"the SFT model produced fewer than 2 distinct responses for every prompt of {prompts_path}; "
            "raise candidates.temperature or check the SFT run"
        )
    store.add_items(result.items)
    return {
        "db": ctx.db_url,
        "items": len(result.items),
        "prompts": result.prompts,
        "short": result.short,
        "dropped": result.dropped,
    }


# -- annotation ----------------------------------------------------------------------------
def annotation(ctx: Context) -> dict[str, Any]:
    """Simulated annotators rank now; human mode pauses until the quota is met, then exports."""
    from annotation_ui.io import export_rankings, write_jsonl
    from annotation_ui.store import Store

    settings = ctx.config.annotation
    store = Store(ctx.db_url, quota=settings.min_annotations_per_item)
    if settings.mode == "simulated":
        from annotation_ui.simulate import ensure_annotators, gold_ranker, simulate

        if ctx.world is None:
            raise AlignInputError("simulated annotation needs the demo world (pipeline.world)")
        names = ensure_annotators(store, settings.annotators)
        simulate(store, gold_ranker(ctx.world), names, settings.noise, seed=settings.seed)
    overview = store.overview()
    missing = overview["items"] * overview["quota"] - overview["rankings"]  # the store never exceeds a quota
    if missing > 0:
        message = _human_instructions(ctx, overview, missing)
        if ctx.resuming_wait:
            raise AlignInputError(f"annotation quota not met yet: {message}")
        raise AnnotationPending(message)
    rows = export_rankings(ctx.db_url, aggregate=settings.aggregate)
    write_jsonl(rows, ctx.rankings_file)
    return {
        "db": ctx.db_url,
        "rankings_file": str(ctx.rankings_file),
        "rankings": len(rows),
        "items": overview["items"],
        "annotators": len(overview["annotators"]),
    }


def _human_instructions(ctx: Context, overview: dict, missing: int) -> str:
    db = ctx.db_url
    return (
        f"{overview['items_complete']} of {overview['items']} items have their {overview['quota']} rankings; "
        f"{missing} more rankings are needed.\n"
        f"  add annotators:  align annotate add-user NAME --db {db}\n"
        f"  serve the app:   align annotate serve --db {db} --port {ctx.config.annotation.port}\n"
        f"  then continue:   align pipeline --config {ctx.root / 'config.yaml'} --resume"
    )


# -- reward ------------------------------------------------------------------------------
def _wire_reward(data: dict[str, Any], ctx: Context) -> None:
    data.pop("simulate", None)  # the pipeline's own rankings replace simulated demo data
    data["data"] = {**data.get("data", {}), "train": str(ctx.rankings_file), "format": "rankings"}
    for key in ("validation", "test"):
        data["data"].pop(key, None)
    if ctx.config.annotation.mode == "simulated" and ctx.world is not None:
        data.setdefault("eval", {})["gold_world"] = str(ctx.world)  # report the RM's accuracy against the gold rule
    if ctx.config.reward_backbone == "sft":
        data.setdefault("model", {})["name_or_path"] = str(ctx.stage_dir("sft"))


# -- PPO ---------------------------------------------------------------------------------
def _wire_ppo(data: dict[str, Any], ctx: Context) -> None:
    data.setdefault("policy", {})["name_or_path"] = str(ctx.stage_dir("sft"))
    data["reward_model"] = str(ctx.stage_dir("reward"))


# -- DPO -------------------------------------------------------------------------------------
def _wire_dpo(data: dict[str, Any], ctx: Context) -> None:
    """DPO learns from the exported rankings (the reward model's data) from the SFT model."""
    data.pop("simulate", None)
    data["data"] = {**data.get("data", {}), "train": str(ctx.rankings_file), "format": "rankings"}
    for key in ("validation", "test"):
        data["data"].pop(key, None)
    data.setdefault("model", {})["name_or_path"] = str(ctx.stage_dir("sft"))
    data["reward_model"] = str(ctx.stage_dir("reward"))  # RM scores in its comparison, as the online methods report
    if ctx.config.annotation.mode == "simulated" and ctx.world is not None:
        data.setdefault("eval", {})["gold_world"] = str(ctx.world)


# -- eval --------------------------------------------------------------------------------
def _wire_eval(data: dict[str, Any], ctx: Context) -> None:
    """Systems named sft, sft+..., ppo, ppo+... (and each method's name) evaluate this pipeline's runs."""
    systems = data.get("systems") or {}
    runs = {"sft", *ctx.config.methods}
    for method in ctx.config.methods:  # every method's policy joins the side-by-side table
        systems.setdefault(method, {"model": method})
    data["systems"] = systems
    for name, spec in list(systems.items()):
        base = name.split("+")[0]
        if base in runs:
            spec = {"model": spec} if isinstance(spec, str) else dict(spec)
            spec["model"] = str(ctx.stage_dir(base))
            spec["optional"] = False
            systems[name] = spec


def _missing_eval_models(config, source: str) -> list[str]:
    """Eval systems name models by path, not as checked input paths (optional ones may be absent)."""
    from align.models import model_problem

    return [
        f"{source}: system '{name}': {problem}"
        for name, system in config.systems.items()
        if not system.optional
        and not system.model.startswith("demo:")
        and (problem := model_problem(system.model)) is not None
    ]


# -- the table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    name: str
    share: float  # typical seconds on 2 idle CPU cores (the demo pipeline, world v5), for the ETA
    action: Callable[[Context], dict[str, Any]] | None = None  # None: run an align stage
    wire: Wiring | None = None  # how a stage step's config is tied to the pipeline's dirs
    check: Callable[[Section, str], list[str]] | None = None  # extra preflight problems of a stage config
    stage: str | None = None  # the align stage a stage step runs (default: its name)

    @property
    def is_stage(self) -> bool:
        return self.action is None

    def run(self, ctx: Context) -> dict[str, Any]:
        if self.action is not None:
            return self.action(ctx)
        config = resolve_demo_refs(stage_config(self.name, ctx, self.wire, self.stage))
        return outputs_of(run_stage(self.stage or self.name, config, summary=False))


# Typical seconds: measured on 2 idle CPU cores with the demo configs (cached world v5, 2026-12-01;
# the world build from README's fresh-clone run). eval answers its QA sets once per system: +2.1 s
# per method beyond the first (20.7 s with one method, 27 s with four).
STEPS: tuple[Step, ...] = (
    Step("world", 383, world),
    Step("sft", 55),
    Step("candidates", 59, candidates),
    Step("annotation", 9, annotation),
    Step("reward", 107, wire=_wire_reward),
    Step("ppo", 48, wire=_wire_ppo, stage="ppo"),
    Step("grpo", 38, wire=_wire_ppo, stage="ppo"),
    Step("rloo", 35, wire=_wire_ppo, stage="ppo"),
    Step("dpo", 70, wire=_wire_dpo, stage="dpo"),
    Step("eval", 20.7, wire=_wire_eval, check=_missing_eval_models),
)
EVAL_SECONDS_PER_EXTRA_METHOD = 2.1
METHOD_STEPS = ("ppo", "grpo", "rloo", "dpo")


def steps_for(config: PipelineConfig) -> list[Step]:
    """The steps this pipeline runs: every fixed step, and the methods it names."""
    steps = [s for s in STEPS if s.name not in METHOD_STEPS or s.name in config.methods]
    extra = EVAL_SECONDS_PER_EXTRA_METHOD * (len(config.methods) - 1)
    return [replace(s, share=s.share + extra) if s.name == "eval" else s for s in steps]


def preflight(ctx: Context) -> None:
    """Validate every stage's config before the first step, so a typo in the eval YAML fails now,
    not after an hour of training. Paths inside the pipeline dir are produced by earlier steps."""
    problems = []
    for step in steps_for(ctx.config):
        if not step.is_stage:
            continue
        try:
            config = stage_config(step.name, ctx, step.wire, step.stage)
            if step.check is not None:
                problems += step.check(
                    config, f"{getattr(ctx.config, step.name).config} (pipeline stage '{step.name}')"
                )
        except AlignInputError as exc:
            problems += str(exc).splitlines()
    problems = [line for line in problems if str(ctx.root) not in line]  # produced by earlier steps
    if problems:
        raise AlignInputError("\n".join(problems))
