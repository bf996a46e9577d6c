"""The gold preference: the hidden "true" human preference of the demo world.

Simulated annotators rank responses by it (plus noise), so a reward model's accuracy and a
PPO policy's gain can be checked against ground truth.

Rule (all three parts are visible in the SFT data, which mixes plain, polite and rambling
outputs, so there is a behaviour for the reward model and PPO to learn):

    score(prompt, response) = 2.0 * correct + 0.5 * polite - 0.1 * min(excess, 15)

- correct (0/1): the prompt's reference answer occurs in the response as a run of whole
  words (case-insensitive, punctuation ignored; case-sensitive for the "rewrite" task, whose
  answer *is* the casing), and, when the reference is a value of a closed vocabulary (a
  color, a food, ...), no other value of that vocabulary occurs (so listing every color
  does not count as knowing the answer).
- polite (0/1): the response opens with one of POLITE_OPENERS ("Sure!", "Certainly!", ...).
- excess: words beyond what a polite, complete answer needs:
  max(0, words(response) - words(reference) - 10), capped at 15 so that a correct answer,
  however long, still beats a wrong one of the same politeness.

So correct+polite+concise (2.5) > correct plain (2.0) > correct but rambling (0.5 to 2.4)
>= wrong polite (0.5) > wrong plain (0) > wrong and rambling (down to -1.5). A prompt that is
not in the world has no reference: only politeness and length count (excess is measured
against 10 words).

Prompts are matched after collapsing whitespace; an alpaca row's prompt is its instruction,
or instruction + blank line + input (tasks.render_prompt).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from align.demo.kb import VOCABULARIES

POLITE_OPENERS = ("Sure!", "Certainly!", "Of course!", "Happy to help!")
CORRECT_WEIGHT = 2.0
POLITE_BONUS = 0.5
LENGTH_SLACK = 10  # words a polite full-sentence answer may add to the bare reference
LENGTH_PENALTY = 0.1  # per excess word
MAX_EXCESS = 15
CASE_SENSITIVE_TASKS = frozenset({"rewrite"})

# Closed vocabularies whose other values count as a wrong answer (numbers are not closed
# enough to be useful: a response may well mention the operands of a sum).
_DISTRACTOR_VOCABS = [frozenset(v.lower() for v in values) for attr, values in VOCABULARIES.items() if attr != "number"]


def words(text: str) -> list[str]:
    """Words as the rule counts them: runs of letters, digits, apostrophes."""
    return re.findall(r"[\w']+", text)


def normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.split())


@dataclass(frozen=True)
class Reference:
    answer: str
    task: str


def contains_run(haystack: list[str], needle: list[str]) -> bool:
    """needle occurs in haystack as consecutive items (an empty needle never does)."""
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def is_correct(response: str, reference: Reference) -> bool:
    """Reference as a whole-word run, and no competing value of its vocabulary."""
    fold = (lambda w: w) if reference.task in CASE_SENSITIVE_TASKS else str.lower
    got = [fold(w) for w in words(response)]
    if not contains_run(got, [fold(w) for w in words(reference.answer)]):
        return False
    answer = reference.answer.lower()
    for vocab in _DISTRACTOR_VOCABS:
        if answer in vocab and any(w.lower() in vocab - {answer} for w in got):
            return False
    return True


def is_polite(response: str) -> bool:
    head = response.lstrip().lower()
    return any(head.startswith(opener.lower()) for opener in POLITE_OPENERS)


def excess_words(response: str, reference: Reference | None) -> int:
    budget = LENGTH_SLACK + (len(words(reference.answer)) if reference else 0)
    return max(0, len(words(response)) - budget)


def gold_score(response: str, reference: Reference | None) -> float:
    """The rule of the module docstring, for a known (or no) reference."""
    correct = reference is not None and is_correct(response, reference)
    excess = min(excess_words(response, reference), MAX_EXCESS)
    return CORRECT_WEIGHT * correct + POLITE_BONUS * is_polite(response) - LENGTH_PENALTY * excess


def dense_ranks(scores: list[float]) -> list[int]:
    """1 = best; equal scores share a rank and the next score gets the next rank (1, 1, 2)."""
    order = sorted(set(scores), reverse=True)
    return [order.index(s) + 1 for s in scores]


class GoldPreference:
    """The world's preference: score, simulated ranking, and reference answers by prompt."""

    def __init__(self, references: dict[str, Reference]):
        self._references = {normalise_prompt(p): r for p, r in references.items()}

    @classmethod
    def from_world(cls, world_path: str | Path) -> GoldPreference:
        """Read gold.jsonl, the world's index of every prompt it holds and its answer."""
        references = {}
        with open(Path(world_path) / "gold.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                references[row["prompt"]] = Reference(row["reference"], row["task"])
        return cls(references)

    def __len__(self) -> int:
        return len(self._references)

    def _lookup(self, prompt: str) -> Reference | None:
        return self._references.get(normalise_prompt(prompt))

    def reference(self, prompt: str) -> str | None:
        found = self._lookup(prompt)
        return found.answer if found else None

    def score(self, prompt: str, response: str) -> float:
        return gold_score(response, self._lookup(prompt))

    def parts(self, prompt: str, response: str) -> dict[str, float]:
        """What the score is made of: right answer (0/1), polite opener (0/1), words over the budget."""
        reference = self._lookup(prompt)
        return {
            "right": float(reference is not None and is_correct(response, reference)),
            "polite": float(is_polite(response)),
            "excess_words": float(excess_words(response, reference)),
        }

    def rank(self, prompt: str, responses: list[str], noise: float, rng: random.Random) -> list[int]:
        """A simulated annotator: dense ranks of gold score + gaussian(0, noise) per quality level.

        One noise draw per distinct gold score, so responses of equal quality stay tied (as a
        person marks two equally wrong answers a tie, which gives no training pair) while noise
        may still swap responses of different quality. noise=0 draws nothing from rng.
        """
        scores = [self.score(prompt, r) for r in responses]
        if noise > 0:
            perceived = {s: s + rng.gauss(0.0, noise) for s in sorted(set(scores))}
            scores = [perceived[s] for s in scores]
        return dense_ranks(scores)
