"""Reading preference data in every accepted form, and the bad-input cases of `align reward`."""

from __future__ import annotations

import json

import pytest

from align.config.loader import load_config
from align.config.reward import RewardConfig
from align.errors import AlignInputError
from align.reward.data import load_preferences
from align.reward.inputs import prepare_data


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def config_for(train, **extra):
    overrides = ["model.name_or_path=minilm", f"data.train={train}", "eval.test_fraction=0"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(RewardConfig, None, overrides)


def test_rankings_file(tmp_path):
    src = load_preferences(
        write_jsonl(tmp_path / "r.jsonl", [{"prompt": "q", "responses": ["a", "b"], "ranks": [2, 1], "annotator": 7}])
    )
    assert src.kind == "rankings" and src.rankings[0].ranks == [2.0, 1.0] and src.rankings[0].annotator == "7"


def test_plain_conversational_and_hh_pairs_read_alike(tmp_path):
    rows = [
        {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "margin": 1.5},
        {
            "prompt": [{"role": "user", "content": "What is 2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
        {
            "chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
            "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}],
        },
        {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5"},
    ]
    src = load_preferences(write_jsonl(tmp_path / "p.jsonl", rows))
    assert src.kind == "pairs" and len(src.pairs) == 4
    assert src.pairs[0].margin == 1.5 and src.pairs[0].prompt == "What is 2+2?"
    for pair in src.pairs[1:]:
        assert pair.prompt == [{"role": "user", "content": "What is 2+2?"}]
        assert (pair.chosen, pair.rejected, pair.margin) == ("4", "5", 0.0)


def test_hh_multi_turn_prompt_keeps_earlier_turns(tmp_path):
    row = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 4",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: five",
    }
    (pair,) = load_preferences(write_jsonl(tmp_path / "hh.jsonl", [row])).pairs
    assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user"] and pair.rejected == "five"


def test_columns_can_be_mapped(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "q", "good": "a", "bad": "b"}])
    (pair,) = load_preferences(path, columns={"question": "prompt", "good": "chosen", "bad": "rejected"}).pairs
    assert (pair.prompt, pair.chosen, pair.rejected) == ("q", "a", "b")


def test_wrong_lengths_name_the_record(tmp_path):
    path = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"prompt": "q", "responses": ["a", "b"], "ranks": [1, 2]},
            {"prompt": "q2", "responses": ["a", "b", "c"], "ranks": [1, 2]},
        ],
    )
    with pytest.raises(AlignInputError, match=r"r.jsonl: record 2: 3 responses but 2 ranks"):
        load_preferences(path)


def test_unknown_columns_say_what_is_expected(tmp_path):
    with pytest.raises(AlignInputError, match="cannot tell the format"):
        load_preferences(write_jsonl(tmp_path / "x.jsonl", [{"text": "hello"}]))


def test_all_tied_rankings_are_an_error_that_counts_them(tmp_path):
    path = write_jsonl(
        tmp_path / "r.jsonl", [{"prompt": f"q{i}", "responses": ["a", "b"], "ranks": [1, 1]} for i in range(3)]
    )
    with pytest.raises(AlignInputError, match=r"no training pairs.*3 records, 3 rankings all tied"):
        prepare_data(config_for(path))


def test_chosen_equals_rejected_everywhere_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "same", "rejected": "same"}])
    with pytest.raises(AlignInputError, match="1 pairs with chosen == rejected dropped -> 0 pairs"):
        prepare_data(config_for(path))


def test_some_bad_items_are_warnings_with_counts(tmp_path):
    rows = [{"prompt": f"q{i}", "responses": ["a", "b"], "ranks": [1, 2]} for i in range(4)]
    rows += [{"prompt": "tied", "responses": ["a", "b"], "ranks": [1, 1]}, rows[0]]
    data = prepare_data(config_for(write_jsonl(tmp_path / "r.jsonl", rows)))
    assert len(data.splits["train"].pairs) == 4
    (warning,) = data.warnings
    assert "6 records, 1 exact duplicates dropped, 1 rankings all tied (no pairs) -> 4 pairs" in warning


def test_split_by_prompt_and_aggregation_from_config(tmp_path):
    rows = [
        {"prompt": f"q{i}", "responses": ["a", "b", "c"], "ranks": [1, 2, 3], "annotator": f"ann{j}"}
        for i in range(20)
        for j in range(3)
    ]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    data = prepare_data(config_for(path, **{"data.validation_fraction": 0.2, "eval.test_fraction": 0.1}))
    prompts = {name: {p.group for p in s.pairs} for name, s in data.splits.items()}
    assert len(prompts["validation"]) == 4 and len(prompts["test"]) == 2 and len(prompts["train"]) == 14
    assert not (prompts["train"] & prompts["validation"]) and not (prompts["train"] & prompts["test"])
    assert len(data.splits["train"].pairs) == 14 * 3 * 3  # 3 annotators x 3 pairs, kept separate
    merged = prepare_data(config_for(path, aggregate_annotators="true", margin_from_rank_gap="true"))
    assert len(merged.splits["train"].pairs) == 20 * 3
    assert sorted({p.margin for p in merged.splits["train"].pairs}) == [1.0, 2.0]


def test_leaking_validation_file_is_warned(tmp_path):
    rows = [{"prompt": f"q{i}", "responses": ["a", "b"], "ranks": [1, 2]} for i in range(3)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    val = write_jsonl(tmp_path / "val.jsonl", rows[:1])
    data = prepare_data(config_for(train, **{"data.validation": val}))
    assert any("1 prompts also occur in train" in w for w in data.warnings)


def test_max_samples_limits_training_pairs(tmp_path):
    rows = [{"prompt": f"q{i}", "responses": ["a", "b", "c"], "ranks": [1, 2, 3]} for i in range(5)]
    data = prepare_data(config_for(write_jsonl(tmp_path / "r.jsonl", rows), **{"data.max_samples": 4}))
    assert len(data.splits["train"].pairs) == 4


def test_annotation_database_url_is_read_through_the_export(tmp_path):
    store_mod = pytest.importorskip("annotation_ui.store")
    db = tmp_path / "annotations.db"
    store = store_mod.Store(str(db), quota=2)
    store.add_items(
        [
            store_mod.NewItem("What is 2+2?", ["4", "5", "Sure! 4."], "item-1"),
            store_mod.NewItem("Colour of the sky?", ["blue", "blue"], "item-2"),
        ]
    )
    for name, ranks in (
        ("ann", {"item-1": [2, 3, 1], "item-2": [1, 1]}),
        ("bob", {"item-1": [1, 3, 2], "item-2": [1, 1]}),
    ):
        store.add_annotator(name, "secret-pw")
        while (view := store.next_item(name)) is not None:
            store.submit(name, view.item_id, ranks[view.external_id])
    store.close()
    src = load_preferences(f"sqlite:///{db}")
    assert src.kind == "rankings" and len(src.rankings) == 4
    assert {r.annotator for r in src.rankings} == {"ann", "bob"}
    data = prepare_data(config_for(f"sqlite:///{db}", aggregate_annotators="true"))
    pairs = data.splits["train"].pairs
    # item-1 mean ranks: "4" 1.5, "5" 3, "Sure! 4." 1.5 -> two pairs; item-2 all tied (counted)
    assert sorted((p.chosen, p.rejected) for p in pairs) == [("4", "5"), ("Sure! 4.", "5")]
    assert data.splits["train"].stats.all_tied == 1


def test_ultrafeedback_binarized_pairs_lose_the_repeated_prompt(repo_root):
    """prompt: a string; chosen/rejected: [user, assistant] conversations; score gap as the margin on request."""
    fixture = str(repo_root / "tests" / "fixtures" / "ultrafeedback_binarized.jsonl")
    data = prepare_data(config_for(fixture, **{"eval.test_fraction": "0", "margin_from_rank_gap": "true"}))
    pairs = sorted(data.splits["train"].pairs, key=lambda p: p.prompt)
    first = pairs[0]
    assert first.prompt == "Add 2 and 3." and (first.chosen, first.rejected) == ("2 + 3 = 5.", "It is 6.")
    assert first.gap == 9.0 and first.margin == 9.0
    plain = prepare_data(config_for(fixture, **{"eval.test_fraction": "0"}))
    assert all(p.margin == 0.0 and p.gap is not None for p in plain.splits["train"].pairs)  # margin only on request
