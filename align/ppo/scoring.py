"""The reward of the online loop, by text: weighted sources (learned reward models through the
reward stage's `RewardScorer`, built-in rules, your Python functions), each checked before it is
trusted, aggregated per sample (align.rl.rewards.aggregate_sources).

A user function is called in the training process, on each rank for that rank's samples:

    def my_reward(prompts: list[str], completions: list[str], **columns) -> list[float | None]

`columns` holds each of the prompt records' other columns as a list (e.g. reference=[...]).
It must return one float or None per completion (None: no opinion on that sample). A missing
file or function, or one that cannot take (prompts, completions, **columns), is refused before
training (exit 2); one that raises, returns the wrong count or a NaN/inf stops the run before
the update (exit 3), naming the source and the prompt, weights and checkpoints as they were.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from align.config.ppo import REWARD_MODEL, PPOConfig, RewardSource
from align.errors import AlignInputError, AlignRunError, TrainingDiverged
from align.rl import rules
from align.rl.rewards import aggregate_sources
from align.user_code import load_named


def load_scorer(reward_model: str):
    """RewardScorer for an `align reward` run dir or its final/ (anything else: AlignInputError)."""
    from align.reward.scorer import RewardScorer

    return RewardScorer(reward_model)


def score_texts(scorer, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """(B,) float scores of a learned reward model, checked as every source's are (_checked)."""
    source = _model_source("rm", 1.0, scorer)
    return torch.tensor(_checked(source, source.call(prompts, responses, []), prompts), dtype=torch.float32)


Scorer = Callable[[list[str], list[str], list[dict]], list[float | None]]


@dataclass
class Source:
    label: str
    weight: float
    kind: str  # model | rule | function | environment
    call: Scorer
    rule: str | None = None  # a built-in rule's name (ifeval and math_answer log more than their score)
    reading: str = "strict"  # an ifeval rule's reading


@dataclass
class SourceScores:
    values: torch.Tensor  # (S, B): each source's reward, NaN where it said nothing
    aggregate: torch.Tensor  # (B,)


class RewardSources:
    """The configured sources, ready to score a batch; `scorer` is the first learned reward model
    (the critic's starting point and the evaluation's RM column), None with rules and functions only."""

    def __init__(self, sources: list[Source], aggregate: str = "sum", scorer=None, group_size: int = 1):
        self.sources, self.mode, self.scorer, self.group_size = sources, aggregate, scorer, group_size

    @classmethod
    def of_scorer(cls, scorer) -> RewardSources:
        """One learned reward model, weight 1 (the `reward_model:` shorthand)."""
        return cls([_model_source("rm", 1.0, scorer)], "sum", scorer)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.sources]

    @property
    def checks(self) -> list[Source]:
        """Rule, function and environment sources: what held-out task accuracy is measured with."""
        return [s for s in self.sources if s.kind != "model"]

    def score(self, prompts: list[str], completions: list[str], records: Sequence[dict]) -> SourceScores:
        rows = [_checked(s, s.call(prompts, completions, list(records)), prompts) for s in self.sources]
        values = torch.tensor(rows, dtype=torch.float32).reshape(len(self.sources), len(completions))
        weights = torch.tensor([s.weight for s in self.sources], dtype=torch.float32)
        return SourceScores(values, aggregate_sources(values, weights, self.mode, self.group_size))

    def rule_details(self, completions: list[str], records: Sequence[dict]) -> dict[str, float]:
        """ifeval/<instruction id>: the share of this batch's samples whose row asks for it that
        follow it (under each ifeval source's reading): which kinds the policy learns, which not;
        <label>_unparsed_share for a math_answer source: completions with no answer to read."""
        metrics = {}
        for source in self.sources:
            if source.rule == "math_answer":
                found = [rules.math_answer_found(c) for c in completions]
                metrics[f"reward/{source.label}_unparsed_share"] = 1 - sum(found) / max(len(found), 1)
        for reading in dict.fromkeys(s.reading for s in self.sources if s.rule == "ifeval"):
            followed: dict[str, list[bool]] = {}
            for completion, record in zip(completions, records):
                for kind, ok in zip(record["instruction_id_list"], ifeval_followed(completion, record, reading)):
                    followed.setdefault(kind, []).append(ok)
            for kind, oks in sorted(followed.items()):
                metrics[f"ifeval/{kind}"] = sum(oks) / len(oks)
        return metrics


def ifeval_followed(completion: str, record: dict, reading: str) -> list[bool]:
    from align.benchmarks.ifeval import check

    return check(record, completion)[reading]


def build_sources(config: PPOConfig, load=load_scorer) -> RewardSources:
    """Every source of `config`, loaded and checked (a bad function or path: AlignInputError)."""
    built, scorers, first = [], {}, None
    for spec in config.reward_sources:
        if spec.model is not None:
            path = config.reward_model if spec.model == REWARD_MODEL else spec.model
            scorer = scorers.get(path) or scorers.setdefault(path, load(path))
            first = first or scorer
            built.append(_model_source(spec.label, spec.weight, scorer))
        elif spec.rule is not None:
            built.append(Source(spec.label, spec.weight, "rule", _rule(spec), spec.rule, spec.reading))
        elif spec.environment:
            built.append(Source(spec.label, spec.weight, "environment", _environment_reward))
        else:
            built.append(Source(spec.label, spec.weight, "function", _function(spec)))
    return RewardSources(built, config.reward.aggregate, first, config.rollout.samples_per_prompt)


def check_rule_fields(config: PPOConfig, records: Sequence[dict], source: str) -> None:
    """Every prompt row carries what its rules read (exit 2 naming the row, the rule and the fix):
    ifeval its instruction_id_list (ids IFEval's checker knows) and a kwargs entry per instruction,
    math_answer an answer. The other answer rules take a missing reference as no opinion."""
    for spec in config.reward_sources:
        if spec.rule == "ifeval":
            _check_ifeval_rows(records, source)
        elif spec.rule == "math_answer":
            for n, record in enumerate(records, start=1):
                if not rules.accepted_answers(record.get(spec.reference_column)):
                    raise AlignInputError(
                        f"{source} row {n}: rule math_answer needs the answer in column '{spec.reference_column}'; "
                        "set the source's reference_column (data:gsm8k and data:math keep it in 'answer')"
                    )


def _check_ifeval_rows(records: Sequence[dict], source: str) -> None:
    from align.benchmarks.ifeval import instruction_ids

    known = set(instruction_ids())
    for n, record in enumerate(records, start=1):
        missing = [f for f in ("instruction_id_list", "kwargs") if f not in record]
        if missing:
            raise AlignInputError(
                f"{source} row {n}: rule ifeval needs {' and '.join(missing)} (IFEval's row shape: "
                "instruction_id_list [ids], kwargs [one dict per id], as data:ifeval's rows have)"
            )
        ids, kwargs = record["instruction_id_list"], record["kwargs"]
        if not isinstance(ids, list) or not ids or not isinstance(kwargs, list) or len(kwargs) != len(ids):
            raise AlignInputError(
                f"{source} row {n}: rule ifeval needs a non-empty instruction_id_list and one kwargs dict per id "
                f"(got {len(ids) if isinstance(ids, list) else ids!r} ids, "
                f"{len(kwargs) if isinstance(kwargs, list) else kwargs!r} kwargs)"
            )
        unknown = sorted(set(ids) - known)
        if unknown:
            raise AlignInputError(
                f"{source} row {n}: unknown instruction id(s) {', '.join(unknown)}; rule ifeval knows: "
                + ", ".join(sorted(known))
            )


ENV_REWARD = "__env_reward__"
"""The record key under which a multi-turn rollout hands each episode's environment reward to the sources."""


def with_env_rewards(records: Sequence[dict], episodes) -> list[dict]:
    """Each row's record with its episode's environment reward under ENV_REWARD."""
    return [{**record, ENV_REWARD: episode.env_reward} for record, episode in zip(records, episodes)]


def _environment_reward(prompts, completions, records):
    return [record.get(ENV_REWARD) for record in records]


def _model_source(label: str, weight: float, scorer) -> Source:
    def score(prompts, completions, _):
        return torch.as_tensor(scorer.score(prompts, completions), dtype=torch.float32).flatten().tolist()

    return Source(label, weight, "model", score)


def _rule(spec: RewardSource) -> Scorer:
    if spec.rule in rules.ANSWER_RULES:
        check, column = rules.ANSWER_RULES[spec.rule], spec.reference_column

        def answer(prompts, completions, records):
            return [check(c, r.get(column)) for c, r in zip(completions, records)]

        return answer
    if spec.rule == "math_answer":
        reference, solution = spec.reference_column, spec.solution_column

        def math(prompts, completions, records):
            return [rules.math_answer(c, r.get(reference), r.get(solution)) for c, r in zip(completions, records)]

        return math
    if spec.rule == "ifeval":
        return lambda prompts, completions, records: [
            rules.ifeval_share(c, r, spec.reading) for c, r in zip(completions, records)
        ]
    if spec.rule == "regex":
        return lambda prompts, completions, records: [rules.regex_match(c, spec.pattern) for c in completions]
    return lambda prompts, completions, records: [rules.length_score(c, spec.target_words) for c in completions]


def _function(spec: RewardSource) -> Scorer:
    where, name = spec.function.rsplit(":", 1)
    what = f"reward.sources function {spec.function!r}"
    fn = load_named(spec.function, what)
    if not callable(fn):
        raise AlignInputError(f"{what}: {where} has no function {name!r}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C function without a readable signature
        signature = None
    try:
        takes_columns = signature is not None and any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
        )
        if takes_columns:
            signature.bind(prompts=[], completions=[])
    except TypeError:
        takes_columns = False
    if not takes_columns:
        shown = f"{name}{signature}" if signature is not None else f"{name} (its signature cannot be read)"
        raise AlignInputError(
            f"{what}: {shown} must take (prompts, completions, **columns) and return one float or None per completion"
        )

    def call(prompts, completions, records):
        columns: dict[str, list] = {}
        for key in {k for r in records for k in r} - {"prompts", "completions"}:
            columns[key] = [r.get(key) for r in records]
        try:
            return fn(prompts=list(prompts), completions=list(completions), **columns)
        except Exception as exc:
            raise AlignRunError(
                f"reward source {spec.label!r} ({spec.function}) raised {type(exc).__name__}: {exc} on a batch "
                f"starting with prompt {prompts[0][:80]!r}; the weights and checkpoints are as they were"
            ) from None

    return call


def _checked(source: Source, values, prompts: list[str]) -> list[float]:
    """One finite float (or NaN for None) per completion, whatever the kind of source: anything else
    stops the run before the update (AlignRunError, exit 3) naming the source and a prompt."""
    advice = (
        "check the reward run (its training loss and eval.json) before using it for PPO"
        if source.kind == "model"
        else "None means no opinion"
    )
    try:
        values = list(values)
    except TypeError:
        raise AlignRunError(
            f"reward source {source.label!r} returned {type(values).__name__}, not a list of floats"
        ) from None
    if len(values) != len(prompts):
        raise AlignRunError(
            f"reward source {source.label!r} returned {len(values)} values for {len(prompts)} completions "
            f"(the batch starting with prompt {prompts[0][:80]!r}); it must return one float or None per completion"
        )
    out = []
    for value, prompt in zip(values, prompts):
        if value is None:
            out.append(math.nan)
            continue
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            raise AlignRunError(
                f"reward source {source.label!r} returned {value!r} for prompt {prompt[:80]!r}; give a float or None"
            ) from None
    bad = [i for i, number in enumerate(out) if math.isinf(number) or (math.isnan(number) and values[i] is not None)]
    if bad:
        raise TrainingDiverged(
            f"reward source {source.label!r} returned {len(bad)} non-finite score(s) (NaN/inf) of {len(out)}, e.g. "
            f"{values[bad[0]]} for prompt {prompts[bad[0]][:80]!r}; rewards must be finite ({advice}). The weights "
            "and checkpoints are as they were"
        )
    return out
