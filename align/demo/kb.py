"""The knowledge base: fictional entities with facts drawn from small closed vocabularies.

Small closed vocabularies keep the facts learnable by a model of a few million parameters,
and make correctness checkable by string match (see gold.py). Names come from a seeded
syllable generator, so they are pronounceable, unique and never real words.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

KINDS = ("city", "person", "creature")
REGIONS = ("Amberfell", "Greyhollow", "Mistvale", "Stonereach", "Sunmere", "Frostmark", "Redmoor", "Thornwick")
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "silver", "gold")
FOODS = ("bread", "plums", "fish", "honey", "rice", "cheese", "apples", "soup", "beans", "nuts")
TRADES = ("fishing", "weaving", "farming", "mining", "baking", "brewing", "smithing", "pottery")
NUMBERS = tuple(range(1, 41))  # "lucky number"; numbers are the hardest facts for a tiny model

# Attribute -> its closed vocabulary. "kind" is asked by the classification task; the others
# by fact QA. Order matters: it is the order of facts in kb.jsonl and in rag docs.
VOCABULARIES: dict[str, tuple] = {
    "kind": KINDS,
    "region": REGIONS,
    "color": COLORS,
    "food": FOODS,
    "number": NUMBERS,
    "trade": TRADES,
}
ATTRIBUTES = tuple(VOCABULARIES)
QA_ATTRIBUTES = tuple(a for a in ATTRIBUTES if a != "kind")

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "th", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ee")
_CODAS = ("", "", "n", "r", "l", "s", "k", "th")


@dataclass(frozen=True)
class Entity:
    """One row of kb.jsonl."""

    name: str
    kind: str
    region: str
    color: str
    food: str
    number: int
    trade: str
    held_out: bool

    def value(self, attribute: str) -> str:
        """The fact as text, the form it takes in the corpus and in answers."""
        return str(getattr(self, attribute))

    def to_json(self) -> dict:
        return asdict(self)


def make_name(rng: random.Random) -> str:
    """A pronounceable 2-3 syllable name such as 'Zorbin' or 'Thaikel'."""
    n_syllables = rng.choice((2, 2, 2, 3))
    syllables = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n_syllables)]
    return "".join(syllables).capitalize()


def _clashes(name: str, taken: list[str]) -> bool:
    """A name inside another word would leak into text about that word.

    Held-out names must never occur in corpus.txt, so no name may be part of another name or
    of a capitalised vocabulary word (a region such as 'Sunmere' contains 'Sunme').
    """
    return len(name) < 5 or any(name in other or other in name for other in taken)


def make_names(n: int, rng: random.Random, taken: list[str] = ()) -> list[str]:
    """n distinct names, none part of another name, of a taken name or of a vocabulary word."""
    reserved = [str(v).capitalize() for values in VOCABULARIES.values() for v in values] + list(taken)
    names: list[str] = []
    while len(names) < n:
        name = make_name(rng)
        if not _clashes(name, names + reserved):
            names.append(name)
    return names


def random_entity(name: str, rng: random.Random, held_out: bool = False) -> Entity:
    """Each attribute drawn uniformly from its vocabulary."""
    return Entity(name=name, held_out=held_out, **{attr: rng.choice(vocab) for attr, vocab in VOCABULARIES.items()})


def make_kb(n_seen: int, n_heldout: int, seed: int) -> list[Entity]:
    """Seen entities first, then held-out ones; each attribute drawn uniformly from its vocabulary."""
    rng = random.Random(f"kb-{seed}")
    names = make_names(n_seen + n_heldout, rng)
    return [random_entity(name, rng, held_out=i >= n_seen) for i, name in enumerate(names)]


def seen(entities: list[Entity]) -> list[Entity]:
    return [e for e in entities if not e.held_out]


def held_out(entities: list[Entity]) -> list[Entity]:
    return [e for e in entities if e.held_out]
