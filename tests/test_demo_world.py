"""The demo world: determinism, data hygiene (splits, held-out leaks), model files, gold rule, caching.

Only the "tiny" size is built here (seconds each).
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
)

from align.demo import (
    GoldPreference,
    build_world,
    doc_copy_rate,
    fact_completion_rate,
    instruction_answer_rate,
    render_prompt,
    resolve_demo_ref,
    resolve_if_demo_ref,
    skills,
    world_dir,
)
from align.demo import build as build_module
from align.demo.corpus import CORPUS_TEMPLATES, fact_sentence
from align.demo.gold import Reference
from align.demo.kb import QA_ATTRIBUTES, Entity, make_kb, seen
from align.demo.model import echo_batch, warm_up_induction
from align.demo.spec import ModelSpec
from align.demo.tasks import make_items, split_items
from align.errors import AlignInputError

SPLIT_FILES = ("sft/train", "sft/validation", "sft/test", "preference/train", "preference/test")
WEIGHTS = "model/model.safetensors"
WARMUP_STEPS = 200


@pytest.fixture(autouse=True)
def offline_cache(monkeypatch, tmp_path):
    """Every test gets its own empty world cache and no hub access."""
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_world("tiny", seed=0, root=tmp_path_factory.mktemp("w") / "tiny", progress=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def manifest(root: Path) -> dict:
    return json.loads((root / "world.json").read_text(encoding="utf-8"))


def data_files(root: Path) -> list[str]:
    """Every file whose bytes must not depend on the machine: all but world.json and the weights."""
    return sorted(f for f in manifest(root)["sha256"] if f != WEIGHTS)


def prompts_of(root: Path, split: str) -> set[str]:
    rows = read_jsonl(root / f"{split}.jsonl")
    return {r["prompt"] if "prompt" in r else render_prompt(r["instruction"], r["input"]) for r in rows}


# --- determinism ---------------------------------------------------------------------------


def test_same_size_and_seed_give_identical_files(tiny, tmp_path):
    again = build_world("tiny", seed=0, root=tmp_path / "again", progress=False)
    assert data_files(tiny) == data_files(again)
    for name in data_files(tiny):
        assert (tiny / name).read_bytes() == (again / name).read_bytes(), name
        assert manifest(tiny)["sha256"][name] == manifest(again)["sha256"][name]
    a, b = load_file(tiny / WEIGHTS), load_file(again / WEIGHTS)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_different_seed_gives_different_data(tiny, tmp_path):
    other = build_world("tiny", seed=1, root=tmp_path / "other", progress=False)
    for name in ("kb.jsonl", "corpus.txt", "sft/train.jsonl"):
        assert (tiny / name).read_bytes() != (other / name).read_bytes(), name


# --- data hygiene --------------------------------------------------------------------------


def test_manifest_counts_match_files(tiny):
    m = manifest(tiny)
    assert (m["size"], m["seed"], m["complete"]) == ("tiny", 0, True)
    for name, n in m["counts"].items():
        assert len((tiny / name).read_text(encoding="utf-8").splitlines()) == n
    assert m["pretrain"]["final_loss"] < m["pretrain"]["first_loss"]


def test_splits_are_disjoint(tiny):
    prompts = {s: prompts_of(tiny, s) for s in SPLIT_FILES}
    for i, a in enumerate(SPLIT_FILES):
        for b in SPLIT_FILES[i + 1 :]:
            assert not prompts[a] & prompts[b], (a, b)


def test_fact_qa_test_pairs_are_seen_facts_not_in_train():
    """An item's polite answer is the canonical fact sentence: one per (entity, attribute)."""
    entities = make_kb(24, 6, seed=0)
    splits = split_items(make_items(seen(entities), 10, 10, 10, seed=0), seed=0)
    facts = {s: {i.polite for i in splits[s] if i.task == "fact_qa"} for s in ("sft/train", "sft/test")}
    assert facts["sft/test"] and not facts["sft/test"] & facts["sft/train"]
    seen_sentences = {fact_sentence(e, a) for e in seen(entities) for a in CORPUS_TEMPLATES}
    assert facts["sft/test"] <= seen_sentences


def test_heldout_entities_only_in_rag(tiny):
    entities = [Entity(**row) for row in read_jsonl(tiny / "kb.jsonl")]
    heldout = [e for e in entities if e.held_out]
    assert heldout and len({e.name for e in entities}) == len(entities)
    training_files = ("corpus.txt", "skills.txt", *(f"{s}.jsonl" for s in SPLIT_FILES))
    training_text = "\n".join((tiny / f).read_text(encoding="utf-8") for f in training_files)
    assert not [e.name for e in heldout if e.name in training_text]
    docs = "\n".join(d["text"] for d in read_jsonl(tiny / "rag/docs.jsonl"))
    for e in heldout:
        for attribute in CORPUS_TEMPLATES:
            assert fact_sentence(e, attribute) in docs
    questions = [q["question"] for q in read_jsonl(tiny / "rag/qa_heldout.jsonl")]
    names_asked = {e.name for e in heldout if any(e.name in q for q in questions)}
    assert names_asked == {e.name for e in heldout}


def test_skill_text_asks_only_sft_train_facts(tiny):
    """FAQ lines cover SFT-train questions; test and preference questions are never asked in pretraining."""
    skills_text = (tiny / "skills.txt").read_text(encoding="utf-8")
    asked = set(re.findall(r"Question: (.*?) Answer:", skills_text))

    def prompts(split):
        rows = read_jsonl(tiny / f"{split}.jsonl")
        return {
            " ".join(render_prompt(r["instruction"], r["input"]).split())
            if "instruction" in r
            else " ".join(r["prompt"].split())
            for r in rows
            if r["task"] != "reading"
        }

    train = prompts("sft/train")
    assert train and train <= asked
    for split in ("sft/test", "sft/validation", "preference/train", "preference/test"):
        held = prompts(split)
        assert not held & asked, split
    assert "3 + 4 = 7." in skills_text  # the addition table
    assert re.search(r"Words: .*\. Sorted: .*\.", skills_text) and "In capitals: THE " in skills_text


def test_sft_reading_rows_are_about_fresh_entities(tiny):
    """Reading practice can only be answered from its passage: the entity is in no other text of
    the world, and the answer restates the passage, a retrieved-style single sentence."""
    rows = [r for r in read_jsonl(tiny / "sft/train.jsonl") if r["task"] == "reading"]
    assert rows
    other = (tiny / "corpus.txt").read_text(encoding="utf-8") + (tiny / "skills.txt").read_text(encoding="utf-8")
    kb_names = {e["name"] for e in read_jsonl(tiny / "kb.jsonl")}
    for row in rows:
        passage, question = row["instruction"].split("\n\n")
        name = re.fullmatch(r"(?:The [a-z ]+ of )?([A-Z][a-z]+) is .+\.", passage).group(1)
        assert name in question and name not in kb_names and name not in other
        assert row["output"].endswith(passage)


def test_short_reading_passages_ask_their_one_fact():
    entities = skills.fresh_entities(4, [], "t")
    lines = skills.short_passages(entities, seed=0)
    assert len(lines) == 4 * len(QA_ATTRIBUTES)
    for line in lines:
        passage, qa = line.split(" Question: ")
        question, answer = qa.split(" Answer: ")
        assert answer == passage and passage.count(" is ") == 1
        assert re.search(r"([A-Z][a-z]+) is ", passage).group(1) in question


def test_retention_is_fresh_text_about_seen_entities(tiny):
    corpus_lines = set((tiny / "corpus.txt").read_text(encoding="utf-8").splitlines())
    retention = (tiny / "retention.txt").read_text(encoding="utf-8").splitlines()
    seen_names = [e["name"] for e in read_jsonl(tiny / "kb.jsonl") if not e["held_out"]]
    assert len(retention) == len(seen_names) and not corpus_lines & set(retention)
    assert all(name in line for name, line in zip(seen_names, retention, strict=True))


# --- model and tokenizer -------------------------------------------------------------------


def test_model_round_trip_gives_identical_logits(tiny, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny / "model")
    ids = tokenizer(["The favorite color of"], return_tensors="pt")["input_ids"]
    model.save_pretrained(tmp_path / "copy")
    tokenizer.save_pretrained(tmp_path / "copy")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "copy").eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert AutoTokenizer.from_pretrained(tmp_path / "copy")("The favorite color of")["input_ids"] == ids[0].tolist()


def test_echo_batch_repeats_its_random_half():
    x = echo_batch(3, 5, (10, 20), bos_id=0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 11) and (x[:, 0] == 0).all()
    assert torch.equal(x[:, 1:6], x[:, 6:]) and ((x[:, 1:] >= 10) & (x[:, 1:] < 20)).all()


def test_induction_warm_up_teaches_copying_a_random_sequence():
    """After the warm-up a fresh model continues a repeated random sequence it has never seen."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)

    def copy_accuracy() -> float:
        x = echo_batch(32, 12, (3, 64), bos_id=0, generator=torch.Generator().manual_seed(99))
        with torch.no_grad():
            predicted = model(x).logits.argmax(-1)[:, 13:-1]  # positions that predict copy tokens 2..12
        return (predicted == x[:, 14:]).float().mean().item()

    before = copy_accuracy()
    spec = ModelSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, induction_steps=WARMUP_STEPS)
    loss = warm_up_induction(
        model.train(), spec, (3, 64), 0, torch.Generator().manual_seed(1), progress=False, length=12
    )
    model.eval()
    assert before < 0.2 and copy_accuracy() > 0.9
    assert loss < 0.75 * math.log(61)  # the random half costs ~log(61) per token, the copy ~0


def test_probes_return_rates(tiny):
    """The base-model probes run end to end (the tiny model is too small for the rates to mean much)."""
    for probe in (fact_completion_rate, instruction_answer_rate, doc_copy_rate):
        assert 0.0 <= probe(tiny, n=12) <= 1.0


def test_chat_template_renders_with_generation_prompt(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny / "model")
    chat = [{"role": "user", "content": "What is 2 + 3?"}]
    prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|bos|>User: What is 2 + 3?\nAssistant:"
    full = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": "5"}], tokenize=False)
    assert full.startswith(prompt) and full.endswith("Assistant: 5<|eos|>\n")
    chat.append({"role": "assistant", "content": "5"})
    masked = tokenizer.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
    answer = [t for t, m in zip(masked["input_ids"], masked["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(answer) == " 5<|eos|>"


# --- gold preference -----------------------------------------------------------------------

Q = "What is the favorite color of Zorbin?"


@pytest.fixture
def gold() -> GoldPreference:
    return GoldPreference({Q: Reference("blue", "fact_qa"), "Shout: the old fox": Reference("THE OLD FOX", "rewrite")})


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Sure! The favorite color of Zorbin is blue.", 2.5),  # correct + polite, 8 words: no excess
        ("blue", 2.0),  # correct
        ("Blue.", 2.0),  # case and punctuation do not matter
        ("Sure! It is red.", 0.5),  # polite but wrong
        ("red", 0.0),
        ("red or blue", 0.0),  # a competing color makes it wrong
        ("bluebird", 0.0),  # whole words only
        ("Sure! blue " + "very " * 30, 1.0),  # 32 words, budget 1 + 10: excess 21 capped at 15 -> 2.5 - 1.5
        ("blue " + "so " * 12, 1.8),  # 13 words: excess 2 -> 2.0 - 0.2
    ],
)
def test_gold_score_hand_computed(gold, response, expected):
    assert gold.score(Q, response) == pytest.approx(expected)


def test_gold_prefers_correct_polite_over_correct_over_wrong(gold):
    polite, plain, wrong = (gold.score(Q, r) for r in ("Certainly! blue", "blue", "green"))
    assert polite > plain > wrong


def test_gold_rewrite_is_case_sensitive_and_prompt_whitespace_insensitive(gold):
    assert gold.score("Shout:\n\nthe  old fox", "THE OLD FOX") == 2.0
    assert gold.score("Shout: the old fox", "the old fox") == 0.0


def test_gold_unknown_prompt_scores_style_only(gold):
    assert gold.reference("not in the world") is None
    assert gold.score("not in the world", "Of course! Anything.") == 0.5
    assert gold.score("not in the world", "word " * 14) == pytest.approx(-0.4)  # 14 words, budget 10


def test_rank_ties_and_determinism(gold):
    rng = random.Random(0)
    state = rng.getstate()
    assert gold.rank(Q, ["blue", "Sure! blue", "blue", "red"], noise=0.0, rng=rng) == [2, 1, 2, 3]
    assert rng.getstate() == state  # noise=0 draws nothing
    noisy = [gold.rank(Q, ["blue", "red", "Sure! blue"], noise=0.5, rng=random.Random(7)) for _ in range(2)]
    assert noisy[0] == noisy[1] and sorted(noisy[0]) == [1, 2, 3]


def test_rank_keeps_equal_quality_tied_under_noise(gold):
    """Two wrong plain answers score the same: noise may reorder quality levels, never split a tie."""
    responses = ["red", "Sure! blue", "green", "blue"]  # gold 0, 2.5, 0, 2
    swapped = 0
    for seed in range(200):
        ranks = gold.rank(Q, responses, noise=0.5, rng=random.Random(seed))
        assert ranks[0] == ranks[2]
        swapped += ranks[1] > ranks[3]
    assert 0 < swapped < 100  # gap 0.5 with noise 0.5 per level: swapped in ~24% of draws


def test_gold_from_world_knows_every_prompt(tiny):
    gold = GoldPreference.from_world(tiny)
    for row in read_jsonl(tiny / "preference/train.jsonl"):
        assert gold.reference(row["prompt"]) == row["reference"]
    for row in read_jsonl(tiny / "rag/qa_heldout.jsonl"):
        assert gold.reference(row["question"]) == row["answers"][0]
    rows = read_jsonl(tiny / "sft/train.jsonl")
    sft_scores = [gold.score(render_prompt(r["instruction"], r["input"]), r["output"]) for r in rows]
    assert min(sft_scores) >= 0.5  # every SFT target is correct, even the rambling ones
    assert {2.0, 2.5} <= set(sft_scores)  # plain and polite styles both present


# --- caching, references, atomic builds ----------------------------------------------------


def test_resolve_demo_ref_builds_lazily_once():
    assert not world_dir("tiny").exists()
    model = resolve_demo_ref("demo:tiny/model", progress=False)
    assert model == (world_dir("tiny") / "model").resolve() and (model / "config.json").is_file()
    stamp = (world_dir("tiny") / "world.json").stat().st_mtime_ns
    assert resolve_demo_ref("demo:tiny/sft/train.jsonl", progress=False).is_file()
    assert (world_dir("tiny") / "world.json").stat().st_mtime_ns == stamp  # not rebuilt


def test_resolve_demo_ref_with_seed():
    assert resolve_demo_ref("demo:tiny@3/kb.jsonl", progress=False) == (world_dir("tiny", 3) / "kb.jsonl").resolve()


def test_resolve_if_demo_ref_resolves_references_and_leaves_other_values():
    assert resolve_if_demo_ref("demo:tiny@3/kb.jsonl") == str((world_dir("tiny", 3) / "kb.jsonl").resolve())
    assert resolve_if_demo_ref("runs/sft-demo") == "runs/sft-demo"
    assert resolve_if_demo_ref("org/model-demo:x") == "org/model-demo:x"


@pytest.mark.parametrize("ref", ["demo:huge/model", "tiny/model", "demo:tiny@x/model"])
def test_bad_demo_refs_are_input_errors(ref):
    with pytest.raises(AlignInputError):
        resolve_demo_ref(ref, progress=False)


def test_bad_size_and_missing_path_are_input_errors(tiny, monkeypatch):
    with pytest.raises(AlignInputError, match="tiny"):
        build_world("huge")
    monkeypatch.setattr(build_module, "world_dir", lambda size, seed=0: tiny)
    with pytest.raises(AlignInputError, match="no 'nope.txt'"):
        resolve_demo_ref("demo:tiny/nope.txt")


def test_crash_leaves_no_world_and_no_temp_dir(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("crash in the middle")

    monkeypatch.setattr(build_module, "make_manifest", crash)
    with pytest.raises(RuntimeError, match="crash"):
        build_world("tiny", root=tmp_path / "w", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.lock"]


def test_stale_temp_dir_is_replaced_and_manifest_is_last(tmp_path):
    stale = tmp_path / ".w.tmp-crashed"
    stale.mkdir()
    (stale / "kb.jsonl").write_text("half a world")
    root = build_world("tiny", root=tmp_path / "w", progress=False)
    assert not stale.exists()
    newest = max((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == "world.json"


def test_build_is_idempotent_and_force_rebuilds(tiny):
    stamp = (tiny / "world.json").stat().st_mtime_ns
    assert build_world("tiny", root=tiny, progress=False) == tiny
    assert (tiny / "world.json").stat().st_mtime_ns == stamp
    build_world("tiny", root=tiny, force=True, progress=False)
    assert (tiny / "world.json").stat().st_mtime_ns > stamp
    assert sorted(p.name for p in tiny.parent.iterdir()) == [".tiny.lock", "tiny"]


def test_refuses_to_replace_a_folder_that_is_not_a_world(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(AlignInputError, match="not a demo world"):
        build_world("tiny", root=tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_sft_style_words_occur_in_pretraining(tiny):
    """Every opener and filler of the SFT styles is in the pretraining text, so their embeddings
    get trained (LoRA SFT cannot train embeddings; v3 garbled every polite answer)."""
    from align.demo.gold import POLITE_OPENERS
    from align.demo.tasks import FILLERS

    pretraining = (tiny / "corpus.txt").read_text(encoding="utf-8") + (tiny / "skills.txt").read_text(encoding="utf-8")
    missing = [phrase for phrase in (*POLITE_OPENERS, *FILLERS) if phrase not in pretraining]
    assert not missing
