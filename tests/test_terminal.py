"""What a person sees in the terminal: one bar per long phase, no cursor codes, no third-party
deprecation noise, and sentences at the end; warnings about the user's own data still show."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from align.quiet import quiet_third_party


def test_third_party_noise_is_filtered_by_its_text_and_everything_else_shows():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1
        )
        warnings.warn(
            "data.jsonl: skipped 3 of 10 prompts longer than rollout.max_prompt_length", UserWarning, stacklevel=1
        )
        warnings.warn("`some_other_api` is deprecated", FutureWarning, stacklevel=1)  # not on the list: shows
    shown = [str(w.message) for w in caught]
    assert shown == [
        "data.jsonl: skipped 3 of 10 prompts longer than rollout.max_prompt_length",
        "`some_other_api` is deprecated",
    ]


def test_deepspeed_cpu_notice_dropped_on_a_cpu_build_other_deepspeed_warnings_kept():
    import torch

    logger = logging.getLogger("DeepSpeed")
    quiet_third_party()
    notice = logger.makeRecord(
        "DeepSpeed", logging.WARNING, __file__, 1, "Setting accelerator to CPU. If you have GPU", (), None
    )
    other = logger.makeRecord("DeepSpeed", logging.WARNING, __file__, 1, "ZeRO-3: parameter count mismatch", (), None)
    assert all(f.filter(other) for f in logger.filters)
    assert any(not f.filter(notice) for f in logger.filters) == (torch.version.cuda is None)


def test_library_log_lines_about_their_own_code_are_dropped_theirs_about_input_kept():
    quiet_third_party()
    import bm25s  # noqa: F401  (it sets its logger to DEBUG on import, after align's filters)

    def passes(name: str, level: int, message: str) -> bool:
        logger = logging.getLogger(name)
        return all(f.filter(logger.makeRecord(name, level, __file__, 1, message, (), None)) for f in logger.filters)

    assert not passes("bm25s", logging.DEBUG, "Building index from IDs")
    assert passes("bm25s", logging.WARNING, "some documents are empty")
    resize = "The new embeddings will be initialized from a multivariate normal distribution that has old"
    assert not passes("transformers.modeling_utils", logging.WARNING, resize)
    assert passes("transformers.modeling_utils", logging.WARNING, "Some weights of the model were not used")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn("Could not find a config file in /tmp/align-reward-backbone-x1 - will assume", UserWarning, stacklevel=1)  # fmt: skip
        warnings.warn("Could not find a config file in /data/my-model - will assume", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["Could not find a config file in /data/my-model - will assume"]


def test_a_stage_ends_with_sentences_and_prints_no_noise(repo_root: Path, tiny_world: Path, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}  # as a user's shell: warnings on
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "align",
            "sft",
            "--config",
            str(repo_root / "configs/tiny/sft.yaml"),
            f"output.output_dir={tmp_path / 'sft'}",
            "training.max_steps=4",
            "data.max_length=64",  # some tiny-world examples are longer: the user's data warning must show
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "\x1b[A" not in out
    for noise in (
        "FutureWarning",
        "Setting accelerator to CPU",
        "Dropping fully masked",
        "Loading weights",
        "(resolved)",
    ):
        assert noise not in out, noise
    assert "examples are longer than max_length=64" in out  # about their data: shown
    tail = result.stdout.strip().splitlines()[-2:]
    assert tail[0].startswith("SFT: exact match ") and tail[0].endswith("."), tail
    assert tail[1].startswith(f"Run dir: {tmp_path / 'sft'}; report: "), tail
    assert "train_loss" not in out  # the metric table only with --verbose


def test_verbose_prints_the_config_and_every_metric(repo_root: Path, tiny_world: Path, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "align",
            "sft",
            "--verbose",
            "--config",
            str(repo_root / "configs/tiny/sft.yaml"),
            f"output.output_dir={tmp_path / 'sft'}",
            "training.max_steps=2",
            "eval.enabled=false",
        ],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SFTConfig (resolved)" in result.stdout and "train_loss" in result.stdout


def test_method_sentence_reads_online_and_dpo_eval_files(tmp_path):
    import json

    from align.summary import method_sentence

    grpo = {
        "prompts": 8,
        "sft": {"gold_mean": 0.5, "accuracy_exact": 0.25},
        "grpo": {"gold_mean": 1.25, "accuracy_exact": 0.5, "kl_to_reference": 2.0},
    }
    (tmp_path / "grpo").mkdir()
    (tmp_path / "grpo" / "eval.json").write_text(json.dumps(grpo))
    assert method_sentence(tmp_path / "grpo") == (
        "GRPO: on 8 held-out prompts, gold score 0.50 (SFT) -> 1.25, exact accuracy 0.25 -> 0.50, KL to SFT 2.00."
    )
    dpo = {"comparison": {"prompts": 4, "sft": {"right_share": 0.5}, "dpo": {"right_share": 0.75}}}
    (tmp_path / "dpo").mkdir()
    (tmp_path / "dpo" / "eval.json").write_text(json.dumps(dpo))
    assert method_sentence(tmp_path / "dpo") == "DPO: on 4 held-out prompts, right answers 50% -> 75%."
    dropped = {"comparison": {"prompts": 4, "sft": {"right_share": 0.16}, "dpo": {"right_share": 0.09}}}
    (tmp_path / "dpo" / "eval.json").write_text(json.dumps(dropped))
    assert method_sentence(tmp_path / "dpo") == (
        "DPO: on 4 held-out prompts, right answers 16% -> 9%. "
        "Warning: fewer right answers than SFT; whatever it gained, it paid for in correctness."
    )
    assert method_sentence(tmp_path / "missing") is None
    no_sft_figure = {"prompts": 8, "sft": {}, "grpo": {"accuracy_exact": 0.5}}
    (tmp_path / "grpo" / "eval.json").write_text(json.dumps(no_sft_figure))
    assert method_sentence(tmp_path / "grpo") == "GRPO: on 8 held-out prompts, exact accuracy 0.50."


def test_the_reward_sentence_flags_a_model_below_chance_or_its_start(tmp_path):
    import json

    from align.pipeline.headline import reward_sentence

    def sentence(untrained: float, trained: float) -> str:
        figures = {"models": {"untrained": {"test": {"accuracy": untrained, "pairs": 24}},
                              "trained": {"test": {"accuracy": trained, "pairs": 24}}}}  # fmt: skip
        (tmp_path / "reward").mkdir(exist_ok=True)
        (tmp_path / "reward" / "eval.json").write_text(json.dumps(figures))
        return reward_sentence(tmp_path)

    worse = sentence(0.88, 0.75)  # the SmolLM2 run's figures
    assert worse.startswith("Reward model: held-out pair accuracy 88% (untrained) -> 75% on 24 pairs.")
    assert "Warning: no better than its untrained start (88%)" in worse
    assert "Warning: below chance" in sentence(0.5, 0.4)
    assert "Warning" not in sentence(0.5, 0.8)
