"""Building, caching and addressing demo worlds.

A world directory (the contract other stages read):

    world.json          manifest: size, seed, version, line counts and sha256 per file,
                        build seconds, pretraining figures (final_loss, ...), the size spec
    kb.jsonl            entities {"name","kind","region","color","food","number","trade","held_out"}
    corpus.txt          pretraining text: bios of seen entities only (corpus.py)
    skills.txt          pretraining text too: reading passages about fresh entities, FAQ lines
                        of SFT-train facts, sums, capitals, sorting, small talk (skills.py)
    retention.txt       seen facts in a phrasing not in corpus.txt, for forgetting checks
    sft/{train,validation,test}.jsonl   alpaca {"instruction","input","output","task"}
    preference/{train,test}.jsonl       {"prompt","reference","task","polite"}, prompts disjoint from sft
    preference/train_with_sft_prompts.jsonl   preference/train + the SFT-train prompts (reward data)
    rag/docs.jsonl      {"id","text"}: one doc per entity, seen and held-out
    rag/qa_seen.jsonl, rag/qa_heldout.jsonl   {"question","answers"}
    tools/sft.jsonl, tools/prompts_{train,test}.jsonl   the sums and sorts answered through the
                        `workbench` tools (tool_lessons.py)
    gold.jsonl          {"prompt","reference","task","polite"} for every prompt above: the index
                        GoldPreference.from_world reads
    model/              tiny LlamaForCausalLM + tokenizer with chat template (from_pretrained); for
                        the default world (demo, seed 0) the weights ship with the package
                        (pretrained.py) and are pre-trained here only when they do not fit

A world is built into a temp dir beside its final place and renamed into place only once
complete (world.json is its last file), under a file lock, so a crash or a concurrent build
never leaves, or lets anyone read, a half world. The same size and seed give byte-identical
files, except world.json (timings) and the weights, which are deterministic for a given
number of CPU threads (ModelSpec.threads).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import random
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from transformers.utils import logging as hf_logging

from align.cache import cache_dir
from align.demo import corpus, kb, pretrained, rag_data, skills, tasks, tool_lessons
from align.demo.model import build_model
from align.demo.spec import WORLD_VERSION, WorldSpec, get_spec
from align.demo.tokenizer import build_tokenizer
from align.errors import AlignInputError
from align.rundir import write_folder_atomically

log = logging.getLogger(__name__)

MANIFEST = "world.json"
_REF = re.compile(r"^demo:(?P<size>[^/@]*)(?:@(?P<seed>\d+))?(?:/(?P<path>.*))?$")


def world_dir(size: str = "demo", seed: int = 0) -> Path:
    """Where the cached world of this size and seed lives ($ALIGN_CACHE, default ~/.cache/align)."""
    return cache_dir("worlds", f"{size}-s{seed}-v{WORLD_VERSION}")


def is_complete(root: Path, size: str, seed: int) -> bool:
    """A finished world of this size, seed and version: its manifest says so and its files exist."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = (manifest.get("size"), manifest.get("seed"), manifest.get("version")) == (size, seed, WORLD_VERSION)
    return same and manifest.get("complete") is True and all((root / f).is_file() for f in manifest.get("sha256", {}))


def build_world(
    size: str = "demo",
    seed: int = 0,
    root: Path | None = None,
    force: bool = False,
    progress: bool = True,
    pretrain: bool = False,
) -> Path:
    """Build (or find) the world of this size and seed at root; returns root.

    Idempotent: a complete world at root is returned at once unless force. size is "demo"
    (the full world: seconds with the shipped base model, ~10 min on 2 CPU cores when its base
    model is pre-trained, as for other seeds or with pretrain) or "tiny" (for tests, seconds).
    """
    spec = get_spec(size)
    root = Path(root) if root is not None else world_dir(size, seed)
    if not force and is_complete(root, size, seed):
        return root
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(root):
        if not force and is_complete(root, size, seed):  # built by someone else while we waited
            return root
        _remove_leftovers(root)

        def write(tmp: Path) -> None:
            write_world(tmp, spec, size, seed, progress, pretrain)
            _make_readable(tmp)

        write_folder_atomically(root, write)
    return root


def resolve_demo_ref(ref: str, progress: bool = True) -> Path:
    """'demo:<size>[@<seed>]/<path>' -> the path inside that world, building it if missing.

    e.g. 'demo:tiny/model', 'demo:demo/sft/train.jsonl', 'demo:tiny@3/rag/docs.jsonl'.
    """
    match = _REF.match(ref)
    if not match:
        raise AlignInputError(
            f"bad demo reference {ref!r}: write 'demo:<size>[@<seed>]/<path>', e.g. 'demo:tiny/model'"
        )
    size, seed, rel = match["size"], int(match["seed"] or 0), match["path"] or ""
    root = build_world(size, seed, progress=progress).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.exists():
        entries = ", ".join(sorted(p.name for p in root.iterdir()))
        raise AlignInputError(f"{ref!r}: the demo world has no {rel!r}; it holds: {entries}")
    return path


def resolve_if_demo_ref(value: str) -> str:
    """A 'demo:...' reference -> its real path (building the world once); other values unchanged."""
    return str(resolve_demo_ref(value)) if value.startswith("demo:") else value


def write_world(out: Path, spec: WorldSpec, size: str, seed: int, progress: bool, pretrain: bool = False) -> None:
    """Generate every file of a world into the empty dir out; world.json last. The base model is
    the shipped one when it was trained on this very world (align.demo.pretrained), unless pretrain."""
    start = time.perf_counter()
    # 1. knowledge base
    entities = kb.make_kb(spec.n_seen, spec.n_heldout, seed)
    seen, heldout = kb.seen(entities), kb.held_out(entities)
    write_jsonl(out / "kb.jsonl", [e.to_json() for e in entities])
    # 2. instruction tasks, split into SFT and preference sets
    splits = tasks.split_items(tasks.make_items(seen, spec.n_arithmetic, spec.n_sort, spec.n_rewrite, seed), seed)
    # 3. pretraining text: bios of seen entities (knowledge), general-skill text, retention bios
    corpus_lines = corpus.make_corpus(seen, spec.bios_per_entity, seed)
    write_lines(out / "corpus.txt", corpus_lines)
    write_lines(out / "retention.txt", corpus.make_retention(seen, corpus_lines, seed))
    kb_names = [e.name for e in entities]
    passage_entities = skills.fresh_entities(spec.n_reading, kb_names, f"passages-{seed}")
    short_entities = skills.fresh_entities(
        spec.n_short_reading, kb_names + [e.name for e in passage_entities], f"short-{seed}"
    )
    passages = skills.reading_passages(passage_entities, seed) + skills.short_passages(short_entities, seed)
    skill_lines = skill_text(splits["sft/train"], spec, seed)
    write_lines(out / "skills.txt", _shuffled(passages + skill_lines, f"skills-{seed}"))
    # 4. SFT rows (with reading practice on fresh entities) and preference prompts
    taken = kb_names + [e.name for e in passage_entities + short_entities]  # SFT reading needs reading, not recall
    reading = rag_data.reading_items(skills.fresh_entities(spec.n_reading_sft, taken, f"sft-{seed}"), seed)
    style_rng = random.Random(f"style-{seed}")
    sft = {name: tasks.sft_rows(items, style_rng) for name, items in splits.items() if name.startswith("sft/")}
    sft["sft/train"] = _shuffled(sft["sft/train"] + tasks.sft_rows(reading, style_rng), f"reading-{seed}")
    for name, rows in sft.items():
        write_jsonl(out / f"{name}.jsonl", rows)
    for name in ("preference/train", "preference/test"):
        write_jsonl(out / f"{name}.jsonl", tasks.preference_rows(splits[name]))
    # more prompts for a reward model: fact checking needs many facts, and SFT-train prompts
    # are fair game for it (never the test prompts)
    write_jsonl(
        out / "preference/train_with_sft_prompts.jsonl",
        tasks.preference_rows(splits["preference/train"] + splits["sft/train"]),
    )
    # 5. RAG documents (seen and held-out) and QA sets
    heldout_items = rag_data.make_heldout_items(heldout, seed)
    write_jsonl(out / "rag/docs.jsonl", rag_data.make_docs(entities))
    write_jsonl(out / "rag/qa_seen.jsonl", rag_data.qa_rows_from_items(splits["sft/test"]))
    write_jsonl(out / "rag/qa_heldout.jsonl", rag_data.qa_rows_from_items(heldout_items))
    # 6. the gold preference's index: every prompt of the world with its reference answer
    all_items = [i for items in splits.values() for i in items] + heldout_items + reading
    write_jsonl(out / "gold.jsonl", tasks.preference_rows(all_items))
    sft_text = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for rows in sft.values() for r in rows]
    _check_no_leak([e.name for e in heldout], corpus_lines + passages + skill_lines + sft_text)
    # 7. tokenizer (not on the reading passages: fresh names stay unknown words, as held-out
    # names are) and the base model, pre-trained on bios and skill text
    log.info("training tokenizer and pre-training the %s base model", size)
    tokenizer = build_tokenizer(
        corpus_lines + skill_lines + sft_text, spec.vocab_size, spec.model.max_position_embeddings
    )
    pretraining_text = corpus_lines + passages + skill_lines
    tokenizer.save_pretrained(out / "model")
    model_fingerprint = pretrained.fingerprint(
        spec.model, pretraining_text, (out / "model" / "tokenizer.json").read_bytes()
    )
    shipped = None if pretrain else pretrained.load_shipped(size, seed, model_fingerprint, spec.model, tokenizer)
    if shipped is not None:
        log.info("using the shipped pre-trained %s base model (align demo --pretrain trains it instead)", size)
        model, pretrain_stats = shipped
    else:
        model, pretrain_stats = build_model(tokenizer, pretraining_text, spec.model, seed, progress)
    with _hf_progress_bars(progress):
        model.save_pretrained(out / "model")
    # 7b. tool lessons: the sums and sorts answered through the workbench tools (tool_lessons.py);
    # not in the tokenizer's or the base model's text, so neither changes with them
    sft_items = _shuffled(splits["sft/train"] + reading, f"reading-{seed}")  # the order of sft/train's rows
    held_out = splits["sft/test"] + splits["preference/test"]
    practice = tool_lessons.practice_items(held_out, seed)
    write_jsonl(out / "tools/sft.jsonl", tool_lessons.sft_rows(sft_items, sft["sft/train"], practice, seed))
    write_jsonl(out / "tools/prompts_train.jsonl", tool_lessons.prompt_rows(splits["preference/train"]))
    write_jsonl(out / "tools/prompts_test.jsonl", tool_lessons.prompt_rows(held_out))
    # 8. manifest, last: its presence marks the world complete
    manifest = make_manifest(out, size, seed, spec, pretrain_stats, time.perf_counter() - start)
    manifest["model_fingerprint"] = model_fingerprint
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def skill_text(sft_train: list[tasks.Item], spec: WorldSpec, seed: int) -> list[str]:
    """skills.txt without the reading passages: FAQ of SFT-train facts, sums, capitals, sorting, small talk."""
    faq = skills.faq_lines(sft_train)
    return (
        faq * spec.faq_repeats
        + skills.addition_lines(tasks.MAX_OPERAND, per_line=8, seed=seed) * spec.sum_repeats
        + skills.capitals_lines(spec.n_capitals, seed)
        + skills.sorting_lines(spec.n_sorting, seed)
        + skills.small_talk_lines(spec.n_small_talk, seed)
    )


def _shuffled(rows: list, key: str) -> list:
    rows = list(rows)
    random.Random(key).shuffle(rows)
    return rows


def make_manifest(out: Path, size: str, seed: int, spec: WorldSpec, pretrain: dict, seconds: float) -> dict:
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return {
        "size": size,
        "seed": seed,
        "version": WORLD_VERSION,
        "counts": {f: _count_lines(out / f) for f in files if f.endswith((".jsonl", ".txt"))},
        "sha256": {f: _sha256(out / f) for f in files},
        "build_seconds": round(seconds, 1),
        "pretrain": pretrain,
        "spec": asdict(spec),
        "complete": True,
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_lines(path, [json.dumps(row, ensure_ascii=False) for row in rows])


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_no_leak(heldout_names: list[str], texts: list[str]) -> None:
    """Held-out entities must be unknown to the base and SFT models; a leak is a generator bug."""
    joined = "\n".join(texts)
    leaked = [n for n in heldout_names if n in joined]
    if leaked:
        raise RuntimeError(f"held-out entities leaked into training text: {leaked[:5]}")


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a non-empty folder that is not a world: it may be the user's."""
    if root.is_dir() and any(root.iterdir()) and not (root / MANIFEST).exists():
        raise AlignInputError(f"{root} exists and is not a demo world; build into a new or empty folder")


@contextmanager
def _hf_progress_bars(enabled: bool):
    """transformers' own bars (e.g. writing shards) are shown only if ours are; restored after."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def _build_lock(root: Path):
    """One builder per world at a time (other processes wait, then find it built)."""
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_leftovers(root: Path) -> None:
    """Temp and old dirs of builds that crashed; safe under the lock, no build is running."""
    for stale in root.parent.glob(f".{root.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in root.parent.glob(f".{root.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _make_readable(root: Path) -> None:
    """Files may be written private (the weights writer does); a cached world is meant to be shared."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
