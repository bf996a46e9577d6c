"""The generated config-key reference: keys written as they can be set (a list's items as
`key[].field`, a mapping's as `key.<name>.field`), and a default for every key that has one."""

from __future__ import annotations

from align.config.ppo import PPOConfig
from align.config.rag import EvalConfig
from align.config.reference import key_rows, markdown_table


def test_keys_inside_lists_and_mappings_are_written_as_they_can_be_set():
    ppo = {row.key: row for row in key_rows(PPOConfig)}
    assert "reward.sources[].weight" in ppo and "reward.sources.weight" not in ppo
    assert ppo["reward.sources"].default == "[]"  # a list made by a factory: its value, not "(see below)"
    assert ppo["kl.kl_coef"].default == "0.1"  # a plain section's keys stay dotted
    evaluation = {row.key: row for row in key_rows(EvalConfig)}
    assert "systems.<name>.model" in evaluation and evaluation["qa"].default == "{}"


def test_see_below_only_where_a_section_follows():
    for config in (PPOConfig, EvalConfig):
        rows = key_rows(config)
        for i, row in enumerate(rows):
            if row.default == "(see below)":
                assert rows[i + 1].key.startswith(row.key), row.key
    assert "`reward.sources[].rule`" in markdown_table(PPOConfig)
