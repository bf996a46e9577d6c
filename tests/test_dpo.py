"""`align dpo` on the tiny world: from simulated rankings, a rankings file, a pairs file and an
annotation database (with DPO, IPO and KTO), resume after a crash, and bad input that exits 2
before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_reward_run import CrashAt

import stages.dpo as dpo_stage
from align.cli.common import build_config
from align.config.common import ModelConfig
from align.errors import AlignInputError
from align.models import load_causal_lm
from align.rundir import read_metrics

QUICK = ["training.max_steps=2", "eval.max_prompts=4", "eval.max_new_tokens=6"]


def config(repo_root: Path, out: Path, *overrides: str):
    return build_config("dpo", repo_root / "configs/tiny/dpo.yaml", [f"output.output_dir={out}", *overrides])


@pytest.fixture(scope="module")
def simulated(repo_root, tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "sim"
    return dpo_stage.run(config(repo_root, out))


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_dpo_on_simulated_rankings_learns_the_preference(simulated):
    out = simulated.run_dir
    assert {"config.yaml", "env.json", "data_stats.json", "metrics.jsonl", "final", "eval.json", "report.md"} <= {
        p.name for p in out.iterdir()
    }
    figures = json.loads((out / "eval.json").read_text())
    # the implicit reward of the untrained policy is 0 for every response (it is the reference): 0.5 by chance
    assert figures["pairs"]["test"]["accuracy"] > 0.55 and figures["pairs"]["test"]["pairs"] > 20
    assert "model_gold_accuracy" in figures["pairs"]["test"]  # judged against the world's gold rule too
    comparison = figures["comparison"]
    assert comparison["prompts"] == 8 and comparison["dpo"]["kl_to_reference"] > 0
    assert {"gold_mean", "right_share", "polite_share"} <= set(comparison["sft"])
    assert "Held-out pairs" in (out / "report.md").read_text()
    model = load_causal_lm(ModelConfig(name_or_path=str(out)))  # final/: a plain model (LoRA merged)
    assert not hasattr(model, "peft_config")


def test_eval_gold_none_leaves_the_gold_rule_out(simulated, tiny_world, repo_root, tmp_path):
    """eval.gold=none drops the gold rule from the comparison even when the pairs are judged by one."""
    data = simulated.run_dir / "data"
    common = [
        "simulate=null",
        f"data.train={data / 'rankings_train.jsonl'}",
        f"data.test={data / 'rankings_test.jsonl'}",
        f"eval.gold_world={tiny_world}",
        *QUICK,
    ]
    judged = json.loads((dpo_stage.run(config(repo_root, tmp_path / "a", *common)).run_dir / "eval.json").read_text())
    assert "gold_mean" in judged["comparison"]["sft"] and "model_gold_accuracy" in judged["pairs"]["test"]
    result = dpo_stage.run(config(repo_root, tmp_path / "g", *common, "eval.gold=none"))
    comparison = json.loads((result.run_dir / "eval.json").read_text())["comparison"]
    assert comparison["prompts"] == 4 and "gold_mean" not in comparison["sft"] and "win_rate_gold" not in comparison


def test_dpo_from_a_rankings_file(simulated, repo_root, tmp_path):
    data = simulated.run_dir / "data"
    result = dpo_stage.run(
        config(
            repo_root,
            tmp_path / "r",
            "simulate=null",
            f"data.train={data / 'rankings_train.jsonl'}",
            f"data.test={data / 'rankings_test.jsonl'}",
            *QUICK,
        )
    )
    stats = json.loads((result.run_dir / "data_stats.json").read_text())
    assert (
        stats["train"]["pairs"] > 0
        and stats["train"]["rankings"] > 0
        and stats["train_examples"] == stats["train"]["pairs"]
    )


def test_ipo_from_a_pairs_file(simulated, repo_root, tmp_path):
    rankings = [
        json.loads(line) for line in (simulated.run_dir / "data" / "rankings_train.jsonl").read_text().splitlines()
    ]
    pairs = [
        {
            "prompt": r["prompt"],
            "chosen": r["responses"][r["ranks"].index(min(r["ranks"]))],
            "rejected": r["responses"][r["ranks"].index(max(r["ranks"]))],
        }
        for r in rankings
        if len(set(r["ranks"])) > 1
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    result = dpo_stage.run(
        config(repo_root, tmp_path / "p", "simulate=null", f"data.train={path}", "data.test=null", "loss=ipo", *QUICK)
    )
    assert (
        result.metrics["train_examples"] > 0 and "test_implicit_accuracy" in result.metrics
    )  # test held out by prompt
    assert (
        json.loads((result.run_dir / "config.yaml").exists() and (result.run_dir / "eval.json").read_text())["summary"][
            "loss"
        ]
        == "ipo"
    )


def test_kto_from_an_annotation_database(repo_root, tmp_path):
    from annotation_ui.store import NewItem, Store

    db = tmp_path / "annotations.db"
    store = Store(str(db), quota=2)
    items = [NewItem(f"What is {a} + 1?", [str(a + 1), f"Sure! {a + 1}.", str(a + 7)], f"item-{a}") for a in range(12)]
    store.add_items(items)
    for name in ("ann", "bob"):
        store.add_annotator(name, "secret-pw")
        while (view := store.next_item(name)) is not None:
            store.submit(name, view.item_id, [2, 1, 3])
    store.close()
    result = dpo_stage.run(
        config(
            repo_root,
            tmp_path / "k",
            "simulate=null",
            f"data.train=sqlite:///{db}",
            "data.test=null",
            "eval.test_fraction=0.25",
            "loss=kto",
            "kto.rule=best_vs_worst",
            *QUICK,
        )
    )
    assert result.metrics["train_examples"] == 2 * 2 * 9  # 9 train items x 2 annotators x (best, worst)
    assert math_finite(read_metrics(result.run_dir / "metrics.jsonl")[-1].get("train_loss", 0.0))


def math_finite(x: float) -> bool:
    import math

    return math.isfinite(x)


def test_resume_after_crash_reproduces_the_losses(simulated, repo_root, tmp_path):
    data = simulated.run_dir / "data"
    common = [
        "simulate=null",
        f"data.train={data / 'rankings_train.jsonl'}",
        "data.test=null",
        "eval.enabled=false",
        "training.max_steps=6",
        "training.save_steps=3",
        "training.logging_steps=1",
    ]
    straight = dpo_stage.run(config(repo_root, tmp_path / "straight", *common)).run_dir
    with pytest.raises(RuntimeError, match="simulated crash"):
        dpo_stage.run(config(repo_root, tmp_path / "crashed", *common), callbacks=[CrashAt(5)])
    dpo_stage.run(config(repo_root, tmp_path / "crashed", *common, "output.resume=auto"))

    def loss(d):
        return {r["step"]: r["loss"] for r in read_metrics(d / "metrics.jsonl") if "loss" in r}

    reference, resumed = loss(straight), loss(tmp_path / "crashed")
    assert sorted(resumed) == sorted(reference) == [1, 2, 3, 4, 5, 6]
    for step, value in reference.items():
        assert resumed[step] == pytest.approx(value, rel=1e-5, abs=1e-6), step


# -- bad input: one message, exit 2, nothing written -------------------------------------------------
def exit_code(args: list[str], capsys) -> tuple[int, str]:
    from align.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


def test_bad_input_exits_2_before_a_run_dir_exists(repo_root, tmp_path, capsys):
    tied = write_jsonl(
        tmp_path / "tied.jsonl", [{"prompt": f"q{i}", "responses": ["a", "b"], "ranks": [1, 1]} for i in range(4)]
    )
    middle = write_jsonl(
        tmp_path / "middle.jsonl",
        [{"prompt": f"q{i}", "responses": ["a", "b", "c"], "ranks": [1, 2, 2]} for i in range(4)],
    )
    base = ["dpo", "--config", str(repo_root / "configs/tiny/dpo.yaml"), "simulate=null", "data.test=null"]
    cases = {
        "all ties": ([f"data.train={tied}"], "no training pairs"),
        "beta 0": ([f"data.train={tied}", "beta=0"], "beta = 0: Input should be greater than 0"),
        "one KTO class": (
            [f"data.train={middle}", "loss=kto", "kto.rule=median", "eval.test_fraction=0"],
            "all desirable; KTO needs both",
        ),
        "unknown loss": ([f"data.train={tied}", "loss=dpo2"], "Input should be 'dpo', 'sigmoid'"),
    }
    for name, (extra, message) in cases.items():
        out = tmp_path / name.replace(" ", "-")
        code, err = exit_code(base + extra + [f"output.output_dir={out}"], capsys)
        assert code == 2 and message in err and "Traceback" not in err, (name, err)
        assert not out.exists(), name
    with pytest.raises(AlignInputError, match="supports update.mode lora, full or partial"):
        config(repo_root, tmp_path / "x", "update.mode=prompt_tuning")


def test_keep_by_weight_keeps_each_annotators_share_seeded():
    from align.dpo.data import keep_by_weight
    from align.reward.pairs import Pair

    pairs = [Pair(prompt=f"q{i}", chosen="a", rejected="b", annotator=f"a{i % 3}") for i in range(3000)]
    kept = keep_by_weight(pairs, {"a0": 1.0, "a1": 0.0, "a2": 0.5}, seed=0)
    by = {name: sum(p.annotator == name for p in kept) for name in ("a0", "a1", "a2")}
    assert by["a0"] == 1000 and by["a1"] == 0 and 450 < by["a2"] < 550
    assert kept == keep_by_weight(pairs, {"a0": 1.0, "a1": 0.0, "a2": 0.5}, seed=0)
    assert len(keep_by_weight(pairs, {}, seed=0)) == 3000  # unnamed weights count 1


def test_reliability_weights_drop_the_random_annotators_pairs(repo_root, tmp_path):
    """Four simulated annotators, the last at random: with reliability weights DPO trains on fewer
    pairs, hardly any of them the random annotator's; with loss kto it is refused (exit 2)."""
    common = ["simulate.annotators=4", "simulate.random_annotators=1", *QUICK]
    plain = dpo_stage.run(config(repo_root, tmp_path / "plain", *common))
    weighted = dpo_stage.run(config(repo_root, tmp_path / "w", *common, "annotator_weights=reliability"))
    plain_count, weighted_count = (
        json.loads((r.run_dir / "data_stats.json").read_text())["train_examples"] for r in (plain, weighted)
    )
    assert weighted_count < 0.85 * plain_count
    with pytest.raises(AlignInputError, match="loss kto learns from single responses"):
        config(repo_root, tmp_path / "k", *common, "annotator_weights=reliability", "loss=kto")
    assert not (tmp_path / "k").exists()
