"""The pipeline's steps, in one table (`STEPS`): each step's name, its typical share of the
demo pipeline's wall time (for the ETA), and how it runs.

A stage step runs an align stage from its own YAML (`pipeline.<step>.config` + overrides),
*wired* to the pipeline: the stage writes under the pipeline dir and reads the previous
stage's output, so a stage file that names `runs/sft-demo` still works inside the pipeline.
The other steps (world, candidates, annotation) are functions of the run context. Every
step returns the outputs the pipeline records.

With `rounds: R` the steps from candidates to the method repeat per round (`candidates-r2`,
`annotation-r2`, `reward-r2`, `ppo-r2`, ...; round 1 keeps the plain names): each round samples
from the previous round's policy, ranks `candidates.budget` selected items, retrains the reward
model on every ranking so far, and continues the previous policy. Each is a step of its own in
pipeline_state.json, so a resume in round 2 redoes nothing of round 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from align.benchmarks.tasks import suite
from align.config import STAGE_CONFIGS, apply_overrides, check_input_paths, read_yaml, resolve_demo_refs, validate
from align.config.common import ModelConfig, Section
from align.config.pipeline import PipelineConfig, StageSpec
from align.errors import AlignInputError
from align.pipeline.rounds import round_key
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

    def rankings_file(self, round_: int = 1) -> Path:
        """Every ranking so far, exported after round `round_`'s annotation."""
        return self.stage_dir(round_key("annotation", round_)) / "rankings.jsonl"

    @property
    def method(self) -> str:
        return self.config.methods[0]

    def policy_before(self, round_: int) -> Path:
        """The policy a round starts from (and samples its candidates with): SFT, then the last round's."""
        return self.stage_dir("sft" if round_ == 1 else round_key(self.method, round_ - 1))


Wiring = Callable[[dict[str, Any], Context, int], None]


SEED_KEY = {"sft": "training.seed", "reward": "training.seed", "dpo": "training.seed", "ppo": "schedule.seed"}
PRECISION_KEY = {"ppo": "policy.precision", "eval": "precision"}  # the others': model.precision


def stage_config(
    step: str,
    ctx: Context,
    wire: Wiring | None = None,
    stage: str | None = None,
    round_: int = 1,
    check_paths: bool = True,
) -> Section:
    """pipeline.<step>: the YAML + overrides of an align stage (`stage`, default the step's name),
    wired to the pipeline's dirs (of round `round_`) and validated (demo refs unresolved:
    preflight validates before the world exists)."""
    stage = stage or step
    spec: StageSpec = getattr(ctx.config, step)
    data = apply_overrides(read_yaml(spec.config), spec.overrides)
    if ctx.config.training_seed is not None and stage in SEED_KEY:
        data = apply_overrides(data, [f"{SEED_KEY[stage]}={ctx.config.training_seed}"])
    if ctx.config.precision is not None:
        data = apply_overrides(data, [f"{PRECISION_KEY.get(stage, 'model.precision')}={ctx.config.precision}"])
    if wire is not None:
        wire(data, ctx, round_)
    out = ctx.stage_dir(round_key(step, round_))
    data["output"] = {
        **data.get("output", {}),
        **tracking(ctx),
        "output_dir": str(out),
        "overwrite": False,
        # an interrupted stage resumes from its own newest checkpoint
        "resume": "auto" if out.is_dir() and any(out.iterdir()) else "never",
    }
    config = validate(STAGE_CONFIGS[stage], data, stage_source(ctx, step))
    if check_paths:
        check_input_paths(config, stage_source(ctx, step))
    return config


def tracking(ctx: Context) -> dict[str, Any]:
    """Every stage's tracker runs are grouped by the pipeline's run dir; trackers and project set
    in the pipeline's own `output` win over the stage files'."""
    output = ctx.config.output
    chosen = {key: getattr(output, key) for key in ("report_to", "project") if key in output.model_fields_set}
    return {**chosen, "group": output.group or ctx.root.name}


def stage_source(ctx: Context, step: str) -> str:
    """How errors name a pipeline stage's config."""
    return f"{getattr(ctx.config, step).config} (pipeline stage '{step}')"


def outputs_of(result: RunResult) -> dict[str, Any]:
    return {
        "run_dir": str(result.run_dir),
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))},
    }


# -- world -------------------------------------------------------------------------------
def world(ctx: Context, round_: int = 1) -> dict[str, Any]:
    from align.demo import build_world

    ctx.world = build_world(size=ctx.config.world, seed=ctx.config.seed)
    return {"world": str(ctx.world)}


# -- candidates ----------------------------------------------------------------------------
def candidates(ctx: Context, round_: int = 1) -> dict[str, Any]:
    """k sampled responses per preference prompt from the round's starting policy, stored as
    annotation items: all of them, or `budget` (round 1 at random, later rounds by `select`)."""
    from align.config.annotate import GenerateConfig
    from align.models import load_causal_lm, load_tokenizer
    from annotation_ui.generate import generate_items
    from annotation_ui.select import select_items, selection_scorer
    from annotation_ui.store import Store

    settings = ctx.config.candidates
    store = Store(ctx.db_url, quota=ctx.config.annotation.min_annotations_per_item)
    prefix = "gen-" if round_ == 1 else f"r{round_}-"
    stored = [i for i in store.item_ids() if i.startswith(prefix)]
    if stored:  # an interrupted step already stored this round's items (one transaction)
        return {"db": ctx.db_url, "items": len(stored), "reused": True}
    path = prompts_file(ctx)
    records, prompts = candidate_prompts(settings, path)
    select = "all" if settings.budget is None else "random" if round_ == 1 else settings.select
    policy = ctx.policy_before(round_)
    generate = GenerateConfig(
        k=settings.k,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        seed=settings.seed + round_ - 1,
        select=select,
        budget=settings.budget,
        pool_k=settings.pool_k,
        reward_model=str(ctx.stage_dir(round_key("reward", round_ - 1))) if select == "uncertainty" else None,
    )
    scorer = selection_scorer(generate, prompts, f"prompts in {path}")  # before any sampling
    model_config = ModelConfig(name_or_path=str(policy))
    model, tokenizer = load_causal_lm(model_config), load_tokenizer(model_config)
    result = generate_items(model, tokenizer, records, generate, source_model=policy.name, source=str(path))
    if not result.items:
        raise AlignInputError(
            f"the {policy.name} model produced fewer than 2 distinct responses for every prompt of "
            f"{path}; raise candidates.temperature or check that run"
        )
    pool = len(result.items)
    items = select_items(result.items, select, settings.budget, settings.k, scorer, generate.seed)
    if round_ > 1:
        items = [replace(item, external_id=prefix + item.external_id.removeprefix("gen-")) for item in items]
    store.add_items(items)
    return {
        "db": ctx.db_url,
        "items": len(items),
        "pool": pool,
        "select": select,
        "prompts": result.prompts,
        "short": result.short,
        "dropped": result.dropped,
    }


def prompts_file(ctx: Context, world: Path | None = None) -> Path:
    """data.prompts, else candidates.prompts; a relative path that is not here is taken inside the
    demo world (`world`, default the one this run built); `data:<name>` is a public set."""
    world = world or ctx.world
    given = _data(ctx, "prompts") or ctx.config.candidates.prompts
    from align.data import catalog

    if given.startswith(catalog.PREFIX):
        return Path(catalog.resolve_ref(given))
    path = Path(given)
    if not path.is_absolute() and world is not None and not path.exists():
        path = world / path
    return path


def candidate_prompts(settings, path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records candidates are sampled for (the first max_prompts) and how many distinct prompts they hold."""
    from align.data import read_records
    from annotation_ui.generate import distinct_prompts

    records = read_records(path)[: settings.max_prompts]
    return records, len(distinct_prompts(records))


# -- annotation ----------------------------------------------------------------------------
def annotation(ctx: Context, round_: int = 1) -> dict[str, Any]:
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
    rows = export_rankings(ctx.db_url, aggregate=settings.aggregate)  # every round's rankings so far
    write_jsonl(rows, ctx.rankings_file(round_))
    return {
        "db": ctx.db_url,
        "rankings_file": str(ctx.rankings_file(round_)),
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


def _data(ctx: Context, role: str) -> str | None:
    """The pipeline's `data.<role>` (your data), or None."""
    return getattr(ctx.config.data, role) if ctx.config.data is not None else None


def _preference_data(data: dict[str, Any], ctx: Context, round_: int) -> None:
    """A stage that learns from preferences reads data.preferences when given (its own format,
    its own held-out split), else the rankings exported so far."""
    data.pop("simulate", None)  # the pipeline's own rankings replace simulated demo data
    given = _data(ctx, "preferences")
    if given is not None:
        data["data"] = {**data.get("data", {}), "train": given}
        data["data"].pop("format", None)
        return
    data["data"] = {**data.get("data", {}), "train": str(ctx.rankings_file(round_)), "format": "rankings"}
    for key in ("validation", "test"):
        data["data"].pop(key, None)


# -- SFT ---------------------------------------------------------------------------------
def _wire_sft(data: dict[str, Any], ctx: Context, round_: int) -> None:
    for role, key in (("sft", "train"), ("sft_validation", "validation")):
        if _data(ctx, role) is not None:
            data.setdefault("data", {})[key] = _data(ctx, role)


# -- reward ------------------------------------------------------------------------------
def _wire_reward(data: dict[str, Any], ctx: Context, round_: int) -> None:
    _preference_data(data, ctx, round_)
    if ctx.config.annotation.mode == "simulated" and ctx.world is not None:
        data.setdefault("eval", {})["gold_world"] = str(ctx.world)  # report the RM's accuracy against the gold rule
    if ctx.config.reward_backbone == "sft":
        data.setdefault("model", {})["name_or_path"] = str(ctx.stage_dir("sft"))


# -- PPO ---------------------------------------------------------------------------------
def _wire_ppo(data: dict[str, Any], ctx: Context, round_: int) -> None:
    """From the round's starting policy (SFT in round 1) against the round's reward model; a later
    round's KL reference is the SFT model unless rounds_reference: previous."""
    data.setdefault("policy", {})["name_or_path"] = str(ctx.policy_before(round_))
    data["reward_model"] = str(ctx.stage_dir(round_key("reward", round_)))
    if _data(ctx, "prompts") is not None:
        data.setdefault("data", {})["train"] = _data(ctx, "prompts")
    if round_ > 1 and ctx.config.rounds_reference == "sft":
        data["reference"] = str(ctx.stage_dir("sft"))


# -- DPO -------------------------------------------------------------------------------------
def _wire_dpo(data: dict[str, Any], ctx: Context, round_: int) -> None:
    """DPO learns from the reward model's data (data.preferences, or the rankings exported so far)
    from the round's starting policy."""
    _preference_data(data, ctx, round_)
    data.setdefault("model", {})["name_or_path"] = str(ctx.policy_before(round_))
    # RM scores in its comparison, as the online methods report
    data["reward_model"] = str(ctx.stage_dir(round_key("reward", round_)))
    if ctx.config.annotation.mode == "simulated" and ctx.world is not None:
        data.setdefault("eval", {})["gold_world"] = str(ctx.world)


# -- eval --------------------------------------------------------------------------------
def _wire_eval(data: dict[str, Any], ctx: Context, round_: int = 1) -> None:
    """Systems named sft, sft+..., ppo, ppo+... (and each method's name) evaluate this pipeline's runs
    (a method's last round); the pipeline's `benchmarks` suite, unless none, replaces the YAML's."""
    if ctx.config.benchmarks != "none":
        data["benchmarks"] = suite(ctx.config.benchmarks)
    if _data(ctx, "qa") is not None:
        data["qa"] = dict(_data(ctx, "qa"))
    systems = data.get("systems") or {}
    runs = {"sft", *ctx.config.methods}
    for name in ("sft", *ctx.config.methods):  # the SFT model and every method's policy join the table
        systems.setdefault(name, {"model": name})
    data["systems"] = systems
    for name, spec in list(systems.items()):
        base = name.split("+")[0]
        if base in runs:
            spec = {"model": spec} if isinstance(spec, str) else dict(spec)
            spec["model"] = str(ctx.stage_dir(base if base == "sft" else round_key(base, ctx.config.rounds)))
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
    name: str  # the pipeline config's section (and the step's name in round 1)
    share: float  # typical seconds on 2 idle CPU cores (the demo pipeline, world v5), for the ETA
    action: Callable[[Context, int], dict[str, Any]] | None = None  # None: run an align stage
    wire: Wiring | None = None  # how a stage step's config is tied to the pipeline's dirs
    check: Callable[[Section, str], list[str]] | None = None  # extra preflight problems of a stage config
    stage: str | None = None  # the align stage a stage step runs (default: its name)
    round: int = 1

    @property
    def key(self) -> str:
        """Its name in pipeline_state.json, the progress line and the pipeline dir."""
        return round_key(self.name, self.round)

    @property
    def is_stage(self) -> bool:
        return self.action is None

    def config(self, ctx: Context, check_paths: bool = True) -> Section:
        return stage_config(self.name, ctx, self.wire, self.stage, self.round, check_paths)

    def run(self, ctx: Context) -> dict[str, Any]:
        if self.action is not None:
            return self.action(ctx, self.round)
        config = resolve_demo_refs(self.config(ctx))
        return outputs_of(run_stage(self.stage or self.name, config, summary=False))


# Typical seconds: measured on 2 idle CPU cores with the demo configs (cached world v5, 2026-12-01;
# the world build from README's fresh-clone run). eval answers its QA sets once per system: +2.1 s
# per method beyond the first (20.7 s with one method, 27 s with four). The world's own depends on
# whether its base model ships with the package (world_seconds).
STEPS: tuple[Step, ...] = (
    Step("world", 0, world),
    Step("sft", 55, wire=_wire_sft),
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

BENCHMARK_ITEM_SECONDS = {
    "ifeval": 2.75,  # per prompt at 512 new tokens; in proportion to the cap
    "gsm8k": 1.64,
    "arc_easy": 0.21,
    "arc_challenge": 0.2,
    "hellaswag": 0.41,
    "piqa": 0.1,
    "wikipedia": 0.21,
}
"""Seconds per item of each benchmark for SmolLM2-135M-Instruct and its tuned versions (2 cores,
bf16, generation batches of 32, the mean over base, SFT, GRPO and DPO of the SmolLM2 pipeline
with `benchmarks: quick`, 2026-12-07): the suite's cost grows with the model, not the demo world."""
SMOLLM2_STAGE_RATIO = 2.5
"""SmolLM2's pipeline stage seconds over the demo shares above (908 s against 361 s, the same run):
benchmark seconds divided by it are in the shares' units, so a SmolLM2 run's measured scale
(about 2.5) turns them back into its seconds and a larger model's scale into more."""


def benchmark_share(kind: str, systems: int) -> float:
    """Typical seconds (shares' units) of `benchmarks: quick | full` for `systems` systems."""
    from align.benchmarks.tasks import BENCHMARKS
    from align.data.catalog import CATALOG

    total = 0.0
    for entry in suite(kind):
        name = entry["name"]
        items = entry.get("limit") or CATALOG[BENCHMARKS[name].data].rows
        tokens = entry.get("max_new_tokens") or BENCHMARKS[name].max_new_tokens
        per_item = BENCHMARK_ITEM_SECONDS.get(name, 1.0) * (tokens / 512 if name == "ifeval" else 1.0)
        total += items * per_item
    return systems * total / SMOLLM2_STAGE_RATIO


METHOD_STEPS = ("ppo", "grpo", "rloo", "dpo")


ROUND_STEPS = ("candidates", "annotation", "reward", *METHOD_STEPS)  # what each further round repeats


def world_seconds(size: str, seed: int) -> float:
    """Typical seconds to build a world (2 idle cores), for the ETA: pre-training the demo world's
    base model takes 10.5 min; with the shipped one the build is 3-5 s of text and loading, which
    says nothing about this machine's speed, so it counts as 0 (as a cached world does)."""
    from align.demo.pretrained import read_origin

    if size != "demo":
        return 10.0
    return 0.0 if read_origin(size, seed) is not None else 630.0


def steps_for(config: PipelineConfig) -> list[Step]:
    """The steps this pipeline runs: every fixed step, the methods it names, and (rounds > 1)
    each further round's candidates, annotation, reward and method before the eval."""
    steps = [s for s in STEPS if s.name not in METHOD_STEPS or s.name in config.methods]
    if config.world == "none":  # your data: no world to build
        steps = [s for s in steps if s.name != "world"]
    if config.data is not None and config.data.preferences is not None:  # preferences given: nothing to rank
        steps = [s for s in steps if s.name not in ("candidates", "annotation")]
    extra = EVAL_SECONDS_PER_EXTRA_METHOD * (len(config.methods) - 1)
    benchmarks = benchmark_share(config.benchmarks, systems=2 + len(config.methods))  # base, SFT, methods
    shares = {"eval": STEPS[-1].share + extra + benchmarks, "world": world_seconds(config.world, config.seed)}
    steps = [replace(s, share=shares.get(s.name, s.share)) for s in steps]
    again = [s for s in steps if s.name in ROUND_STEPS]
    later = [replace(s, round=r) for r in range(2, config.rounds + 1) for s in again]
    return steps[:-1] + later + steps[-1:]


def preflight(ctx: Context) -> None:
    """Validate every stage's config before the first step, so a typo in the eval YAML fails now,
    not after an hour of training. Paths inside the pipeline dir are produced by earlier steps."""
    problems = []
    for step in steps_for(ctx.config):
        if not step.is_stage or step.round > 1:  # later rounds run the same stage configs
            continue
        try:
            config = step.config(ctx, check_paths=False)
            if step.check is not None:
                problems += step.check(config, stage_source(ctx, step.name))
            if step.name == "reward":
                problems += _ensemble_problems(ctx.config, config)
            check_input_paths(config, stage_source(ctx, step.name))
        except AlignInputError as exc:
            problems += str(exc).splitlines()
    problems += _budget_problems(ctx)
    problems = [line for line in problems if str(ctx.root) not in line]  # produced by earlier steps
    if problems:
        raise AlignInputError("\n".join(problems))


def _ensemble_problems(config: PipelineConfig, reward: Section) -> list[str]:
    """Rounds that select by uncertainty ask the reward model's ensemble: it needs 2+ heads."""
    if config.rounds > 1 and config.candidates.budget is not None and config.candidates.select == "uncertainty":
        if reward.heads < 2:
            return [
                f"candidates.select: uncertainty asks the reward model's heads where they disagree, but "
                f"{config.reward.config} trains {reward.heads} head; add `heads=4` to reward.overrides, "
                "or use candidates.select: random"
            ]
    return []


def _budget_problems(ctx: Context) -> list[str]:
    """candidates.budget must fit the prompts (checked now when the prompts can be read: a file
    given, or the demo world already built; else at the candidates step, before any sampling)."""
    from align.demo.build import is_complete, world_dir
    from annotation_ui.select import check_budget

    settings = ctx.config.candidates
    if settings.budget is None:
        return []
    built = None
    if ctx.config.world != "none":
        world = world_dir(ctx.config.world, ctx.config.seed)
        built = world if is_complete(world, ctx.config.world, ctx.config.seed) else None
    path = prompts_file(ctx, built)
    if not path.is_file():
        return []
    try:
        check_budget(settings.budget, candidate_prompts(settings, path)[1], f"prompts in {path}")
    except AlignInputError as exc:
        return [f"candidates.budget: {exc}"]
    return []
