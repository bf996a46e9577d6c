"""Read preference data into `Ranking`s or `Pair`s, whatever form it comes in.

Accepted (docs/design.md "Data formats"):
- rankings      {"prompt", "responses": [...], "ranks": [...], "annotator"?, "item_id"?}
- pairs         {"prompt", "chosen", "rejected", "margin"?}
- conversational (TRL) {"prompt": [messages], "chosen": [messages], "rejected": [messages]}, or
                without "prompt", where chosen/rejected are whole conversations sharing a prefix,
                or with chosen/rejected repeating the prompt's turns (UltraFeedback-binarized:
                prompt a string, chosen/rejected [user, assistant], score_chosen/score_rejected:
                their gap is kept as the pair's gap, the margin with margin_from_rank_gap)
- HH-RLHF style {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}
- an annotation database URL (sqlite:///..., postgresql://..., or a .db/.sqlite file), read
  through annotation_ui.io.export_rankings.

A malformed record is an AlignInputError naming the source and record number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from align.data.io import read_records
from align.errors import AlignInputError
from align.reward.pairs import Pair, Ranking

DB_PREFIXES = ("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")
DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
Kind = Literal["rankings", "pairs"]
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


@dataclass
class PreferenceSource:
    """What one data source held: rankings (kept for Kendall's tau) or pairs, never both."""

    kind: Kind
    rankings: list[Ranking]
    pairs: list[Pair]
    source: str

    def __len__(self) -> int:
        return len(self.rankings) if self.kind == "rankings" else len(self.pairs)


def is_database(source: str) -> bool:
    return source.startswith(DB_PREFIXES) or Path(source).suffix.lower() in DB_SUFFIXES


def load_preferences(
    source: str, columns: dict[str, str] | None = None, fmt: str = "auto", split: str = "train"
) -> PreferenceSource:
    """Read a file, folder, hub name or annotation database into rankings or pairs."""
    if is_database(source):
        return PreferenceSource(
            "rankings", [to_ranking(r, f"{source}: ranking {i}") for i, r in enumerate(_export(source), 1)], [], source
        )
    records = read_records(source, split=split, columns=columns)
    kind = detect_kind(records[0], source) if fmt == "auto" else fmt
    if kind not in ("rankings", "pairs"):
        raise AlignInputError(f"data.format = {fmt!r}: use 'auto', 'rankings' or 'pairs'")

    def where(i):
        return f"{source}: record {i}"

    if kind == "rankings":
        return PreferenceSource("rankings", [to_ranking(r, where(i)) for i, r in enumerate(records, 1)], [], source)
    return PreferenceSource("pairs", [], [to_pair(r, where(i)) for i, r in enumerate(records, 1)], source)


def _export(url: str) -> list[dict[str, Any]]:
    try:
        from annotation_ui.io import export_rankings
    except ImportError as exc:
        raise AlignInputError(f"reading the annotation database {url} needs annotation_ui ({exc})") from None
    rows = export_rankings(url, aggregate=False)  # aggregation is ours (config: aggregate_annotators)
    if not rows:
        raise AlignInputError(f"{url}: the annotation database holds no submitted rankings yet")
    return rows


def detect_kind(record: dict[str, Any], source: str) -> Kind:
    if "responses" in record and "ranks" in record:
        return "rankings"
    if "chosen" in record and "rejected" in record:
        return "pairs"
    raise AlignInputError(
        f"{source}: cannot tell the format from the columns {sorted(record)}: expected rankings "
        "{prompt, responses, ranks} or pairs {prompt, chosen, rejected}; rename columns with data.columns"
    )


def to_ranking(record: dict[str, Any], where: str) -> Ranking:
    for key in ("prompt", "responses", "ranks"):
        if key not in record:
            raise AlignInputError(f"{where}: missing '{key}' (a ranking needs prompt, responses, ranks)")
    responses, ranks = record["responses"], record["ranks"]
    if not isinstance(responses, list) or not isinstance(ranks, list):
        raise AlignInputError(f"{where}: 'responses' and 'ranks' must be lists")
    if len(responses) != len(ranks):
        raise AlignInputError(
            f"{where}: {len(responses)} responses but {len(ranks)} ranks; give one rank per response (1 = best)"
        )
    if not all(isinstance(r, str) for r in responses):
        raise AlignInputError(f"{where}: every response must be a string")
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ranks):
        raise AlignInputError(f"{where}: ranks must be numbers (1 = best), got {ranks!r}")
    return Ranking(
        prompt=_prompt(record["prompt"], where),
        responses=list(responses),
        ranks=[float(r) for r in ranks],
        annotator=None if record.get("annotator") is None else str(record["annotator"]),
        item_id=None if record.get("item_id") is None else str(record["item_id"]),
        task=None if record.get("task") is None else str(record["task"]),
    )


def to_pair(record: dict[str, Any], where: str) -> Pair:
    chosen, rejected = record.get("chosen"), record.get("rejected")
    margin = float(record.get("margin") or 0.0)
    if isinstance(chosen, list) and isinstance(rejected, list):
        prompt, chosen, rejected = _conversational(record.get("prompt"), chosen, rejected, where)
    elif isinstance(chosen, str) and isinstance(rejected, str):
        if "prompt" in record:
            prompt = _prompt(record["prompt"], where)
        else:
            prompt, chosen, rejected = _hh_style(chosen, rejected, where)
    else:
        raise AlignInputError(f"{where}: 'chosen' and 'rejected' must both be strings or both be message lists")
    scores = record.get("score_chosen"), record.get("score_rejected")
    gap = float(scores[0]) - float(scores[1]) if all(isinstance(s, (int, float)) for s in scores) else None
    task = None if record.get("task") is None else str(record["task"])
    return Pair(prompt, chosen, rejected, margin=margin, gap=gap, task=task)


def _prompt(prompt: Any, where: str):
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise AlignInputError(f"{where}: 'prompt' must be a string or a list of {{role, content}} messages")


def _conversational(prompt: Any, chosen: list, rejected: list, where: str):
    """TRL conversational form: explicit prompt + one assistant turn each, or shared-prefix conversations."""
    if prompt is None:  # implicit prompt: the longest common prefix of the two conversations
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    prompt = _prompt(prompt, where)
    # conversations that repeat the prompt (UltraFeedback-binarized: chosen = [user, assistant]) lose it
    head = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    chosen, rejected = (_without_prefix(turns, head) for turns in (chosen, rejected))
    if not prompt:
        raise AlignInputError(f"{where}: chosen and rejected share no prompt turns; add a 'prompt' column")
    texts = []
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if len(turns) != 1 or not isinstance(turns[0], dict) or turns[0].get("role") != "assistant":
            raise AlignInputError(f"{where}: '{name}' must end in exactly one assistant message after the prompt")
        texts.append(str(turns[0]["content"]))
    return prompt, texts[0], texts[1]


def _without_prefix(turns: list, head: list[dict]) -> list:
    """`turns` minus a leading copy of the prompt turns `head` (compared by role and content)."""
    same = len(turns) > len(head) and all(
        isinstance(t, dict) and t.get("role") == h["role"] and str(t.get("content")) == str(h["content"])
        for t, h in zip(turns, head)
    )
    return turns[len(head) :] if same else turns


def _hh_turns(text: str) -> list[dict]:
    parts = _HH_TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts) - 1, 2)]


def _hh_style(chosen: str, rejected: str, where: str):
    """Anthropic HH-RLHF: the dialogue up to the last 'Assistant:' is the prompt."""
    c_turns, r_turns = _hh_turns(chosen), _hh_turns(rejected)
    if not c_turns or c_turns[-1]["role"] != "assistant" or not r_turns or r_turns[-1]["role"] != "assistant":
        raise AlignInputError(
            f"{where}: no 'prompt' column and chosen/rejected are not HH-RLHF dialogues ending in an "
            "'Assistant:' turn; add a 'prompt' column"
        )
    if c_turns[:-1] != r_turns[:-1]:
        raise AlignInputError(f"{where}: chosen and rejected dialogues differ before the last Assistant turn")
    return c_turns[:-1], c_turns[-1]["content"], r_turns[-1]["content"]
