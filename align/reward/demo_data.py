"""Rankings for the demo world from simulated annotators, without running SFT first.

For each preference prompt the world knows the reference answer; from it we synthesize
candidates in the styles the gold rule (align/demo/gold.py) tells apart:

    right answer:  plain "blue" | polite "Sure! The favorite color of Zorbin is blue." (the row's
                   `polite` sentence, as SFT phrases it) | rambling (polite + filler)
    wrong answer:  the same three styles around a wrong answer, which is either
                   off-topic (another task's answer: "19" to a colour question) or, for a
                   `near_miss` share of items, plausible (another colour, a sum off by one,
                   the words left unsorted, the sentence left in lower case)

`candidates` of the six are shown per item, and each of `annotators` simulated annotators
ranks them by GoldPreference.rank (gold score + gaussian noise). Output rows are in the
docs/design.md rankings format, so the stage reads them exactly like a human export.

    python -m align.reward.demo_data --world <world dir> --split train --out rankings.jsonl
    python -m align.reward.demo_data --world <world dir> --breakdown runs/reward-demo
        (a trained run's test accuracy by task and by pair kind: right-vs-wrong answer, split
        into near-miss and off-topic wrong answers, or both right / both wrong so that only
        style differs)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from align.demo.gold import (
    CORRECT_WEIGHT,
    POLITE_OPENERS,
    GoldPreference,
    contains_run,
    words,
)
from align.demo.kb import VOCABULARIES
from align.demo.tasks import FILLERS
from align.rundir import atomic_write_text

STYLES = ("plain", "polite", "rambling")
GENERIC_SENTENCE = "The answer is {answer}."  # for rows without a full-sentence answer of their own


def styled(answer: str, style: str, opener: str, filler: str, sentence: str) -> str:
    """answer in a style; sentence is the full-sentence form of the polite styles."""
    if style == "plain":
        return answer
    polite = f"{opener} {sentence.format(answer=answer)}"
    return polite if style == "polite" else f"{polite} {filler}"


def sentence_template(row: dict) -> str:
    """The row's own full-sentence answer with the answer made a slot ("The trade of X is {answer}."),
    as SFT's polite outputs phrase it; GENERIC_SENTENCE for rows without one."""
    polite, reference = row.get("polite"), row["reference"]
    if not polite or polite.count(reference) != 1:
        return GENERIC_SENTENCE
    return polite.replace("{", "{{").replace("}", "}}").replace(reference, "{answer}")


NEAR_SUM_OFFSETS = (-2, -1, 1, 2)  # a near-miss sum is off by one of these


def _task_input(prompt: str) -> str | None:
    """The input of a sort/rewrite prompt (after its blank line), or None."""
    return prompt.split("\n\n", 1)[1] if "\n\n" in prompt else None


def _vocabulary_of(reference: str) -> list[str] | None:
    """The closed vocabulary (colours, regions, ...) the reference is a value of, or None."""
    return next(([str(v) for v in values] for values in VOCABULARIES.values() if reference in map(str, values)), None)


def near_miss(row: dict, rng: random.Random) -> str | None:
    """A wrong answer of the right type, or None when the task has none."""
    reference, task = row["reference"], row["task"]
    if task == "arithmetic" and reference.lstrip("-").isdigit():
        return str(int(reference) + rng.choice(NEAR_SUM_OFFSETS))
    if task in ("sort_words", "rewrite") and (given := _task_input(row["prompt"])) is not None:
        return given  # the input, unsorted / not rewritten
    names = _vocabulary_of(reference)
    return rng.choice([v for v in names if v != reference]) if names and len(names) > 1 else None


def wrong_kind(prompt: str, reference: str, task: str | None, wrong: str) -> str:
    """'near-miss' when the wrong response holds a plausible wrong answer as `near_miss` makes
    (another value of the reference's vocabulary, a sum off by 1-2, the input left as it was),
    else 'off-topic'. Read from the text, so it also works on rankings read back from disk."""
    said = [w.lower() for w in words(wrong)]
    if task == "arithmetic" and reference.lstrip("-").isdigit():
        offsets = {int(w) - int(reference) for w in said if w.lstrip("-").isdigit()}
        near = bool(offsets & set(NEAR_SUM_OFFSETS))
    elif task in ("sort_words", "rewrite") and (given := _task_input(prompt)) is not None:
        near = given.strip() in wrong
    else:
        names = _vocabulary_of(reference) or []
        near = any(contains_run(said, [w.lower() for w in words(v)]) for v in names if v != reference)
    return "near-miss" if near else "off-topic"


def wrong_answer(row: dict, rows: list[dict], gold: GoldPreference, rng: random.Random, near_share: float) -> str:
    """A wrong answer that the gold rule indeed scores as wrong."""
    for _ in range(50):
        candidate = near_miss(row, rng) if rng.random() < near_share else None
        if candidate is None:
            other = rng.choice(rows)
            if other["task"] == row["task"]:
                continue
            candidate = other["reference"]
        if gold.score(row["prompt"], candidate) < CORRECT_WEIGHT / 2:
            return candidate
    return "I do not know."


def candidates_for(
    row: dict, rows: list[dict], gold: GoldPreference, k: int, near_share: float, rng: random.Random
) -> list[str]:
    wrong = wrong_answer(row, rows, gold, rng, near_share)
    # one opener and filler per item: a right and a wrong answer of the same style then differ
    # only in the answer (minimal pairs), so the correctness signal is not buried in wording noise
    opener, filler = rng.choice(POLITE_OPENERS), rng.choice(FILLERS)
    sentence = sentence_template(row)
    variants = [styled(answer, s, opener, filler, sentence) for answer in (row["reference"], wrong) for s in STYLES]
    variants = list(dict.fromkeys(variants))  # distinct texts only
    return rng.sample(variants, min(k, len(variants)))


def simulate_rankings(
    rows: list[dict],
    gold: GoldPreference,
    annotators: int = 3,
    noise: float = 0.3,
    candidates: int = 4,
    near_share: float = 0.3,
    seed: int = 0,
    split: str = "train",
    random_annotators: int = 0,
) -> list[dict]:
    """One ranking row per (item, annotator); the last `random_annotators` rank at random."""
    rng = random.Random(f"reward-demo-{seed}-{split}")
    out = []
    for index, row in enumerate(rows):
        responses = candidates_for(row, rows, gold, candidates, near_share, rng)
        for annotator in range(annotators):
            if annotator >= annotators - random_annotators:
                ranks = rng.sample(range(1, len(responses) + 1), len(responses))
            else:
                ranks = gold.rank(row["prompt"], responses, noise, rng)
            out.append(
                {
                    "prompt": row["prompt"],
                    "responses": responses,
                    "ranks": ranks,
                    "annotator": f"sim-{annotator}",
                    "item_id": f"{split}-{index}",
                    "task": row.get("task"),
                }
            )
    return out


def write_rankings(rows: list[dict], path: Path) -> Path:
    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return Path(path)


def read_prompt_rows(path: Path) -> list[dict]:
    """Preference prompts of a demo world ({"prompt", "reference", "task", "polite"?})."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if "prompt" in r and "reference" in r]


def breakdown(run_dir: Path, gold: GoldPreference) -> dict[str, dict[str, float]]:
    """Test accuracy of a trained run by task x pair kind: correctness differs (and then whether the
    wrong answer is a near miss or off-topic), or style only."""
    from collections import defaultdict

    from align.reward.data import load_preferences
    from align.reward.evaluate import score_pairs
    from align.reward.pairs import rankings_to_pairs
    from align.reward.scorer import RewardScorer

    pairs, _ = rankings_to_pairs(
        load_preferences(str(run_dir / "data" / "rankings_test.jsonl")).rankings, aggregate=True
    )
    chosen, rejected = score_pairs(RewardScorer(run_dir).score, pairs)
    groups: dict[str, list[bool]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        right = [gold.score(pair.prompt, t) >= CORRECT_WEIGHT / 2 for t in (pair.chosen, pair.rejected)]
        kinds = ["right-vs-wrong" if right[0] != right[1] else "style-only"]
        if right[0] != right[1]:
            wrong = pair.rejected if right[0] else pair.chosen
            kinds.append("right-vs-" + wrong_kind(pair.prompt, gold.reference(pair.prompt) or "", pair.task, wrong))
        for key in ["all"] + kinds + [f"{pair.task}/{kind}" for kind in kinds]:
            groups[key].append(bool(chosen[i] > rejected[i]))
    return {k: {"accuracy": sum(v) / len(v), "pairs": len(v)} for k, v in sorted(groups.items())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Simulated-annotator rankings for the demo world.")
    parser.add_argument("--world", required=True, help="demo world folder (holds gold.jsonl and preference/)")
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--out", help="where to write the rankings JSONL")
    parser.add_argument(
        "--breakdown", metavar="RUN_DIR", help="instead: print a simulated run's test accuracy by pair kind"
    )
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--near-miss", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    world = Path(args.world)
    if args.breakdown:
        for key, value in breakdown(Path(args.breakdown), GoldPreference.from_world(world)).items():
            print(f"{key:32s} {value['accuracy']:.3f}  (n={value['pairs']})")
        return
    if not args.out:
        parser.error("--out is required to write rankings")
    rows = read_prompt_rows(world / "preference" / f"{args.split}.jsonl")
    ranked = simulate_rankings(
        rows,
        GoldPreference.from_world(world),
        args.annotators,
        args.noise,
        args.candidates,
        args.near_miss,
        args.seed,
        args.split,
    )
    print(f"wrote {len(ranked)} rankings of {len(rows)} prompts to {write_rankings(ranked, Path(args.out))}")


if __name__ == "__main__":
    main()
