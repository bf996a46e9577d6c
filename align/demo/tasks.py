"""Instruction tasks: items of five kinds, split into SFT and preference sets, with styled outputs.

Kinds ("task" field):
    fact_qa     "What is the favorite color of Zorbin?" -> "blue" (seen entities only)
    classify    "Is Zorbin a city, a person or a creature?" -> "creature"
    arithmetic  "What is 12 + 7?" -> "19"
    sort_words  "Sort these words alphabetically." + "lamp, anchor, rope" -> "anchor, lamp, rope"
    rewrite     "Rewrite this sentence in uppercase letters." + "the old fox sings" -> "THE OLD FOX SINGS"

Each item is one question; items are split per task, so no question is in two splits. For
fact QA an item is one (entity, attribute) pair, so test pairs are facts the model knows
only from pretraining, never asked in SFT train.

SFT outputs are styled in a mix the gold preference (gold.py) can tell apart, so that the
reward model and PPO have something to learn beyond correctness:
    60% plain      "blue"
    25% polite     "Sure! The favorite color of Zorbin is blue."
    15% rambling   the polite answer + a ~20-word filler sentence (penalised for length)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

from align.demo.corpus import fact_sentence
from align.demo.gold import POLITE_OPENERS
from align.demo.kb import QA_ATTRIBUTES, Entity

FACT_QUESTIONS: dict[str, tuple[str, ...]] = {
    "region": ("What is the home region of {n}?", "Where does {n} come from?", "Which region is {n} from?"),
    "color": (
        "What is the favorite color of {n}?",
        "Which color does {n} like best?",
        "What color does {n} love the most?",
    ),
    "food": ("What is the favorite food of {n}?", "What does {n} like to eat?", "Which food does {n} enjoy most?"),
    "number": ("What is the lucky number of {n}?", "Which number brings {n} luck?", "What is {n}'s lucky number?"),
    "trade": ("What is the trade of {n}?", "What does {n} work in?", "What is {n} famous for?"),
}
CLASSIFY_QUESTIONS = (
    "Is {n} a city, a person or a creature?",
    "What kind of thing is {n}: a city, a person or a creature?",
)
MAX_OPERAND = 15  # arithmetic asks a + b with 0 <= a, b <= MAX_OPERAND: a table a tiny model can learn
ARITHMETIC_QUESTIONS = ("What is {a} + {b}?", "What is {a} plus {b}?", "Add {a} and {b}.")
SORT_WORDS = (
    "anchor",
    "barrel",
    "basket",
    "bucket",
    "candle",
    "compass",
    "drum",
    "feather",
    "helmet",
    "kettle",
    "ladder",
    "lamp",
    "lantern",
    "mirror",
    "needle",
    "pillow",
    "ribbon",
    "rope",
    "saddle",
    "shovel",
    "stone",
    "thimble",
    "violin",
    "wagon",
)
_ADJECTIVES = ("quiet", "old", "tiny", "brave", "sleepy", "clever", "gentle", "proud", "lonely", "happy")
_NOUNS = ("river", "fox", "baker", "tower", "sailor", "garden", "owl", "farmer", "ship", "child")
_VERBS = ("sings", "waits", "rests", "wanders", "shines", "listens", "dances", "grows")
_ADVERBS = ("softly", "slowly", "today", "again", "alone", "quietly", "brightly", "outside")
FILLERS = (
    "I hope this answer is helpful to you, and please feel free to ask me anything else that you would like to know.",
    "Let me know if you have any other questions, because I am always very happy to explain more and to help you out.",
    "This is a great question, and I really enjoyed thinking about it carefully before giving my final answer here.",
)

# Where items go. Preference prompts are disjoint from SFT ones: the reward model and PPO see
# questions that SFT did not train on.
SPLITS = {
    "sft/train": 0.55,
    "sft/validation": 0.05,
    "sft/test": 0.10,
    "preference/train": 0.25,
    "preference/test": 0.05,
}
# Plain answers are the majority, so a tuned model answers plainly (exact match is
# meaningful); the gold preference likes polite ones best, which is what PPO can add.
STYLE_MIX = {"plain": 0.6, "polite": 0.25, "rambling": 0.15}


@dataclass(frozen=True)
class Item:
    """One question with its bare answer (the gold reference) and a polite full-sentence answer."""

    task: str
    instruction: str
    input: str
    reference: str
    polite: str  # without the opener, e.g. "The favorite color of Zorbin is blue."

    @property
    def prompt(self) -> str:
        return render_prompt(self.instruction, self.input)


def render_prompt(instruction: str, input: str = "") -> str:
    """The single prompt string of an alpaca row (the key the gold preference looks up)."""
    return f"{instruction}\n\n{input}" if input else instruction


def fact_question(entity: Entity, attribute: str, rng: random.Random) -> str:
    return rng.choice(FACT_QUESTIONS[attribute]).format(n=entity.name)


def fact_items(entities: list[Entity], rng: random.Random) -> list[Item]:
    return [
        Item("fact_qa", fact_question(e, a, rng), "", e.value(a), fact_sentence(e, a))
        for e in entities
        for a in QA_ATTRIBUTES
    ]


def classify_items(entities: list[Entity], rng: random.Random) -> list[Item]:
    return [
        Item("classify", rng.choice(CLASSIFY_QUESTIONS).format(n=e.name), "", e.kind, fact_sentence(e, "kind"))
        for e in entities
    ]


def arithmetic_items(n: int, rng: random.Random) -> list[Item]:
    pairs = rng.sample([(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)], n)
    return [
        Item("arithmetic", rng.choice(ARITHMETIC_QUESTIONS).format(a=a, b=b), "", str(a + b), f"{a} + {b} = {a + b}.")
        for a, b in pairs
    ]


def _unique_draws(n: int, draw, rng: random.Random) -> list:
    """n distinct values of draw(rng), in draw order."""
    seen: dict = {}
    while len(seen) < n:
        seen.setdefault(draw(rng), None)
    return list(seen)


def _unsorted_words(rng: random.Random) -> tuple[str, ...]:
    while True:
        words = tuple(rng.sample(SORT_WORDS, rng.choice((3, 4, 5))))
        if list(words) != sorted(words):
            return words


def sort_items(n: int, rng: random.Random) -> list[Item]:
    items = []
    for words in _unique_draws(n, _unsorted_words, rng):
        answer = ", ".join(sorted(words))
        polite = f"In alphabetical order: {answer}."
        items.append(Item("sort_words", "Sort these words alphabetically.", ", ".join(words), answer, polite))
    return items


def random_sentence(rng: random.Random) -> str:
    return " ".join(("the", rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_VERBS), rng.choice(_ADVERBS)))


def rewrite_items(n: int, rng: random.Random) -> list[Item]:
    return [
        Item("rewrite", "Rewrite this sentence in uppercase letters.", s, s.upper(), f"Here it is: {s.upper()}.")
        for s in _unique_draws(n, random_sentence, rng)
    ]


def make_items(
    seen_entities: list[Entity], n_arithmetic: int, n_sort: int, n_rewrite: int, seed: int
) -> dict[str, list[Item]]:
    """All items of every kind, task -> items."""
    rng = random.Random(f"tasks-{seed}")
    return {
        "fact_qa": fact_items(seen_entities, rng),
        "classify": classify_items(seen_entities, rng),
        "arithmetic": arithmetic_items(n_arithmetic, rng),
        "sort_words": sort_items(n_sort, rng),
        "rewrite": rewrite_items(n_rewrite, rng),
    }


def split_items(items_by_task: dict[str, list[Item]], seed: int) -> dict[str, list[Item]]:
    """Split name -> items: each task is shuffled and cut by SPLITS, then the splits are shuffled."""
    rng = random.Random(f"splits-{seed}")
    splits: dict[str, list[Item]] = {name: [] for name in SPLITS}
    for items in items_by_task.values():
        items = list(items)
        rng.shuffle(items)
        bounds = [round(c * len(items)) for c in accumulate(SPLITS.values())]
        bounds[-1] = len(items)  # float sums may miss 1.0; every item goes somewhere
        for name, start, end in zip(SPLITS, [0, *bounds], bounds, strict=False):
            splits[name].extend(items[start:end])
    for items in splits.values():
        rng.shuffle(items)
    return splits


def styled_output(item: Item, rng: random.Random) -> str:
    """The SFT target: plain, polite or rambling, drawn by STYLE_MIX."""
    style = rng.choices(list(STYLE_MIX), weights=list(STYLE_MIX.values()))[0]
    if item.task == "reading":  # answers from a document restate its sentence (see skills.py)
        style = "polite"
    if style == "plain":
        return item.reference
    polite = f"{rng.choice(POLITE_OPENERS)} {item.polite}"
    return polite if style == "polite" else f"{polite} {rng.choice(FILLERS)}"


def sft_rows(items: list[Item], rng: random.Random) -> list[dict]:
    return [
        {"instruction": i.instruction, "input": i.input, "output": styled_output(i, rng), "task": i.task} for i in items
    ]


def preference_rows(items: list[Item]) -> list[dict]:
    """Prompt, bare reference, task, and the full-sentence answer SFT's polite style uses."""
    return [{"prompt": i.prompt, "reference": i.reference, "task": i.task, "polite": i.polite} for i in items]
