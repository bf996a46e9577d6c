"""`align annotate` commands end to end: import errors with file:line, exports in the
docs/design.md formats, stats, add-user, simulate (gold preference) and generate (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align.cli import main
from annotation_ui.io import export_pairs, export_rankings, pairs_from_ranking
from annotation_ui.store import Store


def run(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "ann.db")


GOOD = [
    {"id": "q1", "prompt": "What is 2+2?", "responses": ["4", "5", "four"]},
    {"id": "q2", "prompt": "Say hi", "responses": ["Hello", "Hey"]},
]


@pytest.mark.parametrize(
    "lines, message",
    [
        ([json.dumps(GOOD[0]) + "\n", '{"id": "x", "prompt": "p", "responses": ["a", "b"\n'], ":2: malformed JSON"),
        (
            [{"id": "x", "prompt": "p", "responses": ["a", "b"]}, {"id": "y", "prompt": "p", "responses": ["only"]}],
            ":2: 1 response(s)",
        ),
        (
            [
                {"id": "x", "prompt": "p", "responses": ["a", "b"]},
                "",
                {"id": "x", "prompt": "q", "responses": ["a", "b"]},
            ],
            ":3: duplicate item id 'x' (first at line 1)",
        ),
        ([{"id": "x", "responses": ["a", "b"]}], ":1: needs a non-empty string 'prompt'"),
    ],
)
def test_bad_import_names_file_and_line_and_keeps_existing_items(tmp_path, db, capsys, lines, message):
    assert run("annotate", "import", str(write_jsonl(tmp_path / "good.jsonl", GOOD)), "--db", db) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "".join(
            line + ("" if line.endswith("\n") else "\n") if isinstance(line, str) else json.dumps(line) + "\n"
            for line in lines
        )
    )
    capsys.readouterr()
    assert run("annotate", "import", str(bad), "--db", db) == 2
    err = capsys.readouterr().err
    assert f"{bad}{message}" in err and "Traceback" not in err
    assert Store(db).item_ids() == ["q1", "q2"]


def test_import_same_ids_twice_is_refused(tmp_path, db, capsys):
    items = write_jsonl(tmp_path / "items.jsonl", GOOD)
    assert run("annotate", "import", str(items), "--db", db) == 0
    assert run("annotate", "import", str(items), "--db", db) == 2
    assert "already in the database" in capsys.readouterr().err
    assert Store(db).item_ids() == ["q1", "q2"]


def _rank(store: Store, name: str, ranks_by_id: dict[str, list[int]]) -> None:
    for _ in ranks_by_id:
        view = store.next_item(name)
        store.submit(name, view.item_id, ranks_by_id[view.external_id])


def test_exports_follow_the_design_formats(tmp_path, db):
    store = Store(db, quota=2)
    assert run("annotate", "import", str(write_jsonl(tmp_path / "items.jsonl", GOOD)), "--db", db) == 0
    for name in ("ann", "bob"):
        store.add_annotator(name, "secret-pw")
    _rank(store, "ann", {"q1": [1, 2, 2], "q2": [2, 1]})
    _rank(store, "bob", {"q1": [2, 1, 3], "q2": [2, 1]})

    raw = export_rankings(db)
    assert {
        "prompt": "What is 2+2?",
        "responses": ["4", "5", "four"],
        "ranks": [1, 2, 2],
        "annotator": "ann",
        "item_id": "q1",
    } in raw and len(raw) == 4
    merged = {r["item_id"]: r for r in export_rankings(db, aggregate=True)}
    assert merged["q1"]["ranks"] == [1, 1, 2] and "annotator" not in merged["q1"]  # means 1.5, 1.5, 2.5
    assert merged["q2"]["ranks"] == [2, 1]

    out = tmp_path / "pairs.jsonl"
    assert run("annotate", "export", "--db", db, "--format", "pairs", "--raw", "--out", str(out)) == 0
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    # ann q1 [1,2,2]: 2 pairs (the tie gives none); bob q1 [2,1,3]: 3 pairs; q2: 1 pair each
    assert len(pairs) == 2 + 3 + 1 + 1 == len(export_pairs(db))
    assert {"prompt": "Say hi", "chosen": "Hey", "rejected": "Hello"} in pairs
    assert all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)

    out = tmp_path / "agg.jsonl"
    assert run("annotate", "export", "--db", db, "--aggregate", "--method", "bradley_terry", "--out", str(out)) == 0
    assert len(out.read_text().splitlines()) == 2
    assert run("annotate", "export", "--db", db, "--raw", "--out", str(out)) == 2  # an earlier export is kept...
    assert len(out.read_text().splitlines()) == 2
    assert run("annotate", "export", "--db", db, "--raw", "--out", str(out), "--overwrite") == 0  # ...unless asked
    assert len(out.read_text().splitlines()) == 4


def test_pairs_from_ranking_ties_give_no_pair():
    assert pairs_from_ranking("p", ["a", "b", "c"], [2, 1, 2]) == [
        {"prompt": "p", "chosen": "b", "rejected": "a"},
        {"prompt": "p", "chosen": "b", "rejected": "c"},
    ]
    assert pairs_from_ranking("p", ["a", "b"], [1, 1]) == []


def test_stats_and_add_user(tmp_path, db, capsys):
    assert run("annotate", "add-user", "root", "--db", db, "--password", "pw-root-1", "--role", "admin") == 0
    assert run("annotate", "add-user", "x", "--db", db, "--password", "pw-x-long", "--role", "boss") == 2
    assert "role must be one of" in capsys.readouterr().err
    assert run("annotate", "import", str(write_jsonl(tmp_path / "i.jsonl", GOOD)), "--db", db) == 0
    store = Store(db, quota=2)
    for name in ("ann", "bob"):
        store.add_annotator(name, "secret-pw")
    _rank(store, "ann", {"q1": [1, 2, 3], "q2": [1, 2]})
    _rank(store, "bob", {"q1": [1, 2, 3], "q2": [2, 1]})
    assert run("annotate", "stats", "--db", db, "--out", str(tmp_path / "stats")) == 0
    figures = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert figures["items_complete"] == 2 and figures["rankings"] == 4
    assert figures["agreement"]["pairwise_agreement"] == pytest.approx(3 / 4)
    assert (tmp_path / "stats" / "report.md").read_text().startswith("# Annotation statistics")
    assert run("annotate", "stats", "--db", str(tmp_path / "missing.db")) == 2


def test_unknown_override_key_is_named(db, capsys):
    assert run("annotate", "stats", "--db", db, "min_annotations_per_itme=3") == 2
    assert "did you mean 'min_annotations_per_item'" in capsys.readouterr().err


def test_simulate_ranks_by_the_gold_preference(tmp_path, db):
    world = tmp_path / "world"
    world.mkdir()
    write_jsonl(world / "gold.jsonl", [{"prompt": "What color is Zorblat?", "reference": "blue", "task": "fact_qa"}])
    write_jsonl(
        tmp_path / "items.jsonl",
        [
            {
                "id": "z",
                "prompt": "What color is Zorblat?",
                "responses": ["It is red.", "Sure! It is blue.", "It is blue."],
            }
        ],
    )
    assert run("annotate", "import", str(tmp_path / "items.jsonl"), "--db", db) == 0
    assert (
        run(
            "annotate",
            "simulate",
            "--db",
            db,
            "--world",
            str(world),
            "--annotators",
            "3",
            "--noise",
            "0",
            "min_annotations_per_item=2",
        )
        == 0
    )
    rankings = export_rankings(db)
    assert len(rankings) == 2  # quota 2, though 3 simulated annotators were available
    assert all(r["ranks"] == [3, 1, 2] for r in rankings)  # polite+correct > correct > wrong
    assert run("annotate", "simulate", "--db", db, "--world", str(tmp_path)) == 2  # not a world


def test_generate_with_the_tiny_model_then_simulate_and_export(tiny_world, repo_root, tmp_path, db):
    """generate -> import -> simulate (gold preference) -> export, on the tiny world."""
    out = tmp_path / "candidates.jsonl"
    config = str(repo_root / "configs" / "tiny" / "annotate.yaml")
    assert run("annotate", "generate", "--config", config, "--db", db, "--out", str(out), "generate.max_prompts=4") == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert 1 <= len(written) <= 4
    for row in written:
        assert 2 <= len(row["responses"]) <= 3
        assert len({r.strip() for r in row["responses"]}) == len(row["responses"])  # deduplicated
        assert row["source_model"] == "demo:tiny/model" and row["meta"]["temperature"] == 1.0
    assert Store(db).item_ids() == [row["id"] for row in written]
    assert run("annotate", "generate", "--config", config, "--db", db, "generate.max_prompts=4") == 2  # same ids again
    assert run("annotate", "simulate", "--config", config, "--db", db) == 0
    rankings = export_rankings(db)
    assert len(rankings) == 2 * len(written)  # every item at the quota of 2
    assert run("annotate", "generate", "--db", db, "--model", "demo:tiny/model") == 2  # no prompts given


def test_distinct_keeps_first_seen_order():
    from align.data.conversation import read_prompt
    from annotation_ui.generate import distinct

    def prompt_of(record, where):
        prompt = read_prompt(record, where, 1)
        return prompt.text, prompt.messages

    assert distinct([" a", "b", "a ", "", "c", "b"]) == ["a", "b", "c"]
    assert prompt_of({"instruction": "Do X", "input": "now"}, "f")[0] == "Do X\n\nnow"
    assert prompt_of(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "f"
    ) == ("hi", [{"role": "user", "content": "hi"}])
