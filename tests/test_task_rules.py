"""Reward rules for public tasks and the answer rules' edge cases, by hand: signs, thousands,
lists of accepted answers, empty references; math_answer on GSM8K and MATH answers; ifeval's
share of instructions followed; prompt rows refused before training when a rule cannot read them."""

from __future__ import annotations

import pytest

from align.config import validate
from align.config.ppo import RewardSource
from align.errors import AlignInputError
from align.rl import rules


def test_a_minus_sign_is_part_of_the_number():
    assert rules.exact_answer("-3", "3") == 0.0 and rules.exact_answer("-3", "-3") == 1.0
    assert rules.contains_answer("The answer is -24.", "24") == 0.0
    assert rules.contains_answer("The answer is -24.", "-24") == 1.0
    assert rules.last_number("so it is -24", "24") == 0.0 and rules.last_number("so it is -24", "-24") == 1.0
    assert rules.normalize_answer("a well-known x-ray") == "a well known x ray"  # hyphens in words: spaces


def test_only_groups_of_three_digits_are_thousands():
    assert rules.normalize_answer("1,2,3") == "1 2 3"
    assert rules.last_number("the list 1,2,3", "3") == 1.0
    assert rules.normalize_answer("1,024 and 12,345,678") == "1024 and 12345678"
    assert rules.normalize_answer("1,0245") == "1 0245"


def test_empty_references_say_nothing_and_lists_accept_any_answer():
    assert rules.exact_answer("", "") is None and rules.contains_answer("x", "  ") is None
    assert rules.last_number("7", []) is None
    assert rules.exact_answer("Paris", ["London", "paris"]) == 1.0
    assert rules.exact_answer("Rome", ["London", "paris"]) == 0.0
    assert rules.last_number("it is 42", [41, 42]) == 1.0  # numbers as numbers, not "[41, 42]"


def test_math_answer_on_gsm8k_and_math_answers():
    assert rules.math_answer("She earns 9 * 2 = 18 dollars.", "18") == 1.0
    assert rules.math_answer("She earns 9 * 2 = 18 dollars.", "Janet sells 9 eggs.\n#### 18") == 1.0
    assert rules.math_answer("It costs $1,234.", "1234") == 1.0
    assert rules.math_answer("18 or maybe 19", "18") == 0.0  # the last number is the answer
    assert rules.math_answer("So \\boxed{18} is it, not 19", "18") == 1.0  # a boxed answer beats the last number
    assert rules.math_answer("half: \\boxed{\\frac{1}{2}}", "0.5") == 1.0  # Math-Verify for LaTeX
    assert rules.math_answer("The answer is \\boxed{\\frac{\\pi}{2}}.", "\\frac{\\pi}{2}") == 1.0
    assert rules.math_answer("The answer is \\boxed{\\pi}.", "\\frac{\\pi}{2}") == 0.0
    assert rules.math_answer("I do not know", "\\frac{1}{2}") == 0.0  # nothing to parse: wrong
    # the solution's last \\boxed{} is the answer (the stored one may be mangled: "\\le(" for "\\left(")
    solution = "Hence $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$"
    assert rules.math_answer("\\boxed{(3, \\frac{\\pi}{2})}", "\\le(3,\\frac{\\pi}{2}\\right)", solution) == 1.0
    assert rules.math_answer("anything", None) is None


def test_ifeval_share_of_instructions_followed():
    record = {"instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]}
    assert rules.ifeval_share("all lowercase and no commas here", record) == 1.0
    assert rules.ifeval_share("All lowercase? no: a capital", record) == 0.5
    assert rules.ifeval_share("A capital, and a comma", record) == 0.0
    words = {"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"relation": "at least", "num_words": 5}]}  # fmt: skip
    assert rules.ifeval_share("one two three four five", words) == 1.0
    assert rules.ifeval_share("one two three", words) == 0.0
    # loose also tries the answer without its first line (a "Sure, here it is:" preamble)
    quoted = {"instruction_id_list": ["startend:quotation"], "kwargs": [{}]}
    answer = 'Sure:\n"a quoted answer"'
    assert rules.ifeval_share(answer, quoted, "strict") == 0.0 and rules.ifeval_share(answer, quoted, "loose") == 1.0


def ppo_config(sources, **sections):
    from align.config.ppo import PPOConfig

    return validate(
        PPOConfig,
        {
            "policy": {"name_or_path": "m"},
            "data": {"train": "prompts.jsonl"},
            "reward": {"sources": sources},
            "critic": {"init": "policy"},
            "output": {"output_dir": "out"},
            **sections,
        },
    )


def test_rows_a_rule_cannot_read_are_refused_naming_the_row():
    from align.ppo.scoring import check_rule_fields

    config = ppo_config([{"rule": "ifeval"}])
    good = {"prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    check_rule_fields(config, [good], "prompts.jsonl")
    with pytest.raises(AlignInputError, match=r"prompts.jsonl row 2: rule ifeval needs kwargs"):
        check_rule_fields(config, [good, {"prompt": "p", "instruction_id_list": ["punctuation:no_comma"]}], "prompts.jsonl")  # fmt: skip
    with pytest.raises(AlignInputError, match=r"row 1: unknown instruction id\(s\) punctuation:no_dots; .*punctuation:no_comma"):  # fmt: skip
        check_rule_fields(config, [{**good, "instruction_id_list": ["punctuation:no_dots"]}], "prompts.jsonl")
    with pytest.raises(AlignInputError, match="one kwargs dict per id"):
        check_rule_fields(config, [{**good, "kwargs": [{}, {}]}], "prompts.jsonl")
    math = ppo_config([{"rule": "math_answer", "reference_column": "answer"}])
    check_rule_fields(math, [{"prompt": "p", "answer": "18"}], "gsm8k.jsonl")
    with pytest.raises(AlignInputError, match=r"gsm8k.jsonl row 1: rule math_answer needs the answer in column 'answer'"):  # fmt: skip
        check_rule_fields(math, [{"prompt": "p", "answer": ""}], "gsm8k.jsonl")


def test_a_regex_that_does_not_compile_is_refused_with_the_config():
    with pytest.raises(ValueError, match="does not compile"):
        RewardSource.model_validate({"rule": "regex", "pattern": "([a-z"})
    assert RewardSource.model_validate({"rule": "regex", "pattern": "[a-z]+"}).pattern == "[a-z]+"


# -- inside the online loop --------------------------------------------------------------------
LOWER_NO_COMMA = {"instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]}


def test_task_rules_as_sources_rewards_and_group_advantages_by_hand():
    """ifeval (weight 1) + math_answer (weight 2), groups of 2: the aggregate and GRPO / RLOO
    advantages computed by hand."""
    from align.ppo.scoring import build_sources
    from align.rl.group import group_advantages

    sources_ = [{"rule": "ifeval"}, {"rule": "math_answer", "reference_column": "answer", "weight": 2.0}]
    config = ppo_config(sources_, rollout={"batch_size": 2, "samples_per_prompt": 2}, ppo={"minibatch_size": 4})
    sources = build_sources(config)
    record = {**LOWER_NO_COMMA, "answer": "18"}
    completions = ["it is 18", "It is 18, yes", "it is 17", "It is 19, sorry"]
    scored = sources.score(["p"] * 4, completions, [record] * 4)
    # ifeval: 1, 0 (capital, comma), 1, 0; math: 1, 1, 0, 0
    assert scored.values.tolist() == [[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]
    assert scored.aggregate.tolist() == [3.0, 2.0, 1.0, 0.0]
    # grpo: each group (3, 2), (1, 0): +-0.5 / (sample std 0.7071 + 1e-4)
    expected = [0.5 / (0.7071068 + 1e-4), -0.5 / (0.7071068 + 1e-4)] * 2
    assert group_advantages(scored.aggregate, 2, "grpo").tolist() == pytest.approx(expected, rel=1e-5)
    assert group_advantages(scored.aggregate, 2, "rloo").tolist() == pytest.approx([1.0, -1.0, 1.0, -1.0])
    rates = sources.rule_details(completions, [record] * 4)
    assert rates == {
        "ifeval/change_case:english_lowercase": 0.5,
        "ifeval/punctuation:no_comma": 0.5,
        "reward/math_answer_unparsed_share": 0.0,
    }
    unread = sources.rule_details(["no idea", "\\boxed{x}", "it is 3", "none"], [record] * 4)
    assert unread["reward/math_answer_unparsed_share"] == 0.5  # "no idea" and "none"


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "gae"])
def test_an_ifeval_rule_trains_and_logs_each_instruction(tmp_path, estimator):
    import json

    import ppo_world

    from align.config.ppo import PPOConfig
    from align.rundir import read_metrics
    from stages import ppo as ppo_stage

    world = ppo_world.build(tmp_path / "w")
    kinds = [["change_case:english_lowercase"], ["punctuation:no_comma"], ["change_case:english_lowercase", "punctuation:no_comma"]]  # fmt: skip
    for name in ("train", "test"):
        rows = [json.loads(line) for line in world[name].read_text().splitlines()]
        path = tmp_path / f"{name}_ifeval.jsonl"
        path.write_text(
            "".join(
                json.dumps({**r, "instruction_id_list": kinds[i % 3], "kwargs": [{}] * len(kinds[i % 3])}) + "\n"
                for i, r in enumerate(rows)
            )
        )
        world[name] = path
    group = {} if estimator == "gae" else {"rollout": {"batch_size": 2, "samples_per_prompt": 4}}
    out = tmp_path / "run"
    sections = {
        "reward_model": None,
        "reward": {"sources": [{"rule": "ifeval"}]},
        "advantage": {"estimator": estimator},
        "critic": {"init": "policy"},
        "schedule": {"steps": 2, "accuracy_steps": 1, "save_steps": None},
        "eval": {"max_prompts": 4},
        **group,
    }
    ppo_stage.run(validate(PPOConfig, ppo_world.config_dict(world, out, **sections)))
    rows = read_metrics(out / "metrics.jsonl")
    assert len(rows) == 2
    for row in rows:
        rates = {k: v for k, v in row.items() if k.startswith("ifeval/")}
        assert set(rates) <= {"ifeval/change_case:english_lowercase", "ifeval/punctuation:no_comma"} and rates
        assert all(0.0 <= v <= 1.0 for v in rates.values())
        assert 0.0 <= row["reward/ifeval"] <= 1.0 and "heldout/ifeval" in row


def test_rows_without_instructions_stop_the_stage_before_training(tmp_path):
    import ppo_world

    from align.config.ppo import PPOConfig
    from stages import ppo as ppo_stage

    world = ppo_world.build(tmp_path / "w")
    sections = {"reward_model": None, "reward": {"sources": [{"rule": "ifeval"}]}, "critic": {"init": "policy"}}
    out = tmp_path / "run"
    with pytest.raises(AlignInputError, match=r"prompts_train.jsonl row 1: rule ifeval needs instruction_id_list"):
        ppo_stage.run(validate(PPOConfig, ppo_world.config_dict(world, out, **sections)))
    assert not out.exists()  # refused before the run dir was made
