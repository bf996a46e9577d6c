"""`align sft` end to end on the tiny world: run-dir contract, exact resume after a crash, early stopping,
LoRA merge, and one clear exit-2 error per kind of bad input with the existing run dir untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback

from align.cli import main
from align.config.sft import SFTConfig
from align.rundir import read_metrics


def config_dict(world: Path, out: Path, **sections) -> dict:
    base = {
        "model": {"name_or_path": str(world / "model")},
        "data": {
            "train": str(world / "sft" / "train.jsonl"),
            "validation": str(world / "sft" / "validation.jsonl"),
            "max_samples": 24,
            "max_length": 96,
        },
        "update": {"mode": "lora", "lora": {"r": 4}},
        "training": {
            "max_steps": 6,
            "batch_size": 4,
            "learning_rate": 0.02,
            "logging_steps": 1,
            "warmup_ratio": 0.0,
            "lr_scheduler": "linear",
        },
        "eval": {"enabled": False},
        "output": {"output_dir": str(out), "report_to": ["none"]},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


def run(world, out, **sections):
    import stages.sft

    callbacks = sections.pop("callbacks", ())
    return stages.sft.run(SFTConfig.model_validate(config_dict(world, out, **sections)), callbacks=callbacks)


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}


class CrashAt(TrainerCallback):
    """Simulates a killed job: raises once training has finished `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash after step {self.step}")


def test_end_to_end_with_evaluation_and_merge(tiny_world, tmp_path):
    """Through the CLI: run-dir contract, base-vs-tuned evaluation, and a merged LoRA model whose logits
    match base + adapter."""
    from align.config.common import ModelConfig
    from align.models import load_causal_lm

    out = tmp_path / "run"
    cfg = config_dict(
        tiny_world,
        out,
        training={"save_steps": 3, "eval_steps": 3, "learning_rate": 0.005},  # enough to learn in 6 steps
        eval={
            "enabled": True,
            "max_examples": 8,
            "max_new_tokens": 8,
            "retention_text": str(tiny_world / "retention.txt"),
        },
        data={"test": str(tiny_world / "sft" / "test.jsonl")},
        merge_lora=True,
    )
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exit_info:
        main(["sft", "--config", str(path)])
    assert exit_info.value.code in (0, None)
    for name in (
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "eval.json",
        "report.md",
        "loss.png",
        "final/adapter_config.json",
        "final/tokenizer_config.json",
        "final/align.json",
        "checkpoints/step-6/COMPLETE.json",
        "data_stats.json",
        "final-merged/config.json",
    ):
        assert (out / name).exists(), name
    assert not list((out / "checkpoints").glob("checkpoint-*"))  # only complete step-N dirs remain
    figures = json.loads((out / "eval.json").read_text())["models"]
    assert figures["tuned"]["val_loss"] < figures["base"]["val_loss"]  # it learned something
    assert "forgetting_ratio" in figures["tuned"] and "exact_match" in figures["base"]
    assert "Base vs tuned" in (out / "report.md").read_text()

    adapted = load_causal_lm(ModelConfig(name_or_path=str(out))).eval()  # run dir -> final/ -> base + adapter
    merged = load_causal_lm(ModelConfig(name_or_path=str(out / "final-merged"))).eval()
    base = load_causal_lm(ModelConfig(name_or_path=str(tiny_world / "model"))).eval()
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        a, m, b = adapted(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(a, m, atol=1e-4)
    assert not torch.allclose(a, b, atol=1e-4)  # the adapter did change the model
    with pytest.raises(SystemExit) as exit_info:  # merging again refuses to overwrite
        main(["sft", "merge", str(out)])
    assert exit_info.value.code == 2


def test_resume_after_crash_reproduces_uninterrupted_losses(tiny_world, tmp_path):
    reference = losses(run(tiny_world, tmp_path / "straight", training={"save_steps": 3}).run_dir)
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tiny_world, crashed, training={"save_steps": 3}, callbacks=[CrashAt(5)])
    assert (crashed / "checkpoints" / "step-3" / "COMPLETE.json").is_file()
    assert 4 in losses(crashed)  # logged before the crash, after the checkpoint
    run(tiny_world, crashed, training={"save_steps": 3}, output={"resume": "auto"})
    resumed = losses(crashed)
    assert sorted(resumed) == sorted(reference) == [1, 2, 3, 4, 5, 6]
    for step in reference:
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), step
    assert list(crashed.glob("metrics.before-resume-*.jsonl"))  # the lost continuation is kept aside


def test_early_stopping_on_flat_validation_loss(tiny_world, tmp_path):
    result = run(
        tiny_world,
        tmp_path / "run",
        training={"max_steps": 10, "learning_rate": 1e-30, "eval_steps": 1, "early_stopping_patience": 2},
    )
    assert result.metrics["global_steps"] == 3  # best at step 1, no improvement at steps 2 and 3
    assert result.metrics["best_weights_from_step"] == 1  # final/ holds step 1's weights


def test_early_stopping_ends_with_the_best_weights_not_the_last():
    """Evaluations at losses 3, 1, 2, 4: the weights of the second (best) come back at the end."""
    from types import SimpleNamespace

    from transformers import TrainerControl

    from align.trainer_callbacks import EarlyStopping

    model = torch.nn.Linear(2, 2)
    model.bias.requires_grad_(False)  # frozen parameters are not copied, and not touched
    stopper, control = EarlyStopping(patience=2), TrainerControl()
    weights_at = {}
    for step, loss in enumerate([3.0, 1.0, 2.0, 4.0], start=1):
        with torch.no_grad():
            model.weight.fill_(float(step))
        weights_at[step] = model.weight.detach().clone()
        stopper.on_evaluate(None, SimpleNamespace(global_step=step), control, metrics={"eval_loss": loss}, model=model)
    assert control.should_training_stop and stopper.stopped_at == 4
    bias = model.bias.detach().clone()
    stopper.on_train_end(None, None, control, model=model)
    assert torch.equal(model.weight, weights_at[2]) and stopper.restored_step == 2
    assert torch.equal(model.bias, bias)


# -- bad input: one clear message, exit 2, the existing run dir untouched ------------------------


def write_jsonl(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


GOOD = json.dumps({"instruction": "What is 1 + 1?", "input": "", "output": "2"})


@pytest.mark.parametrize(
    "case, expected",
    [
        ("malformed", r"bad.jsonl:3: malformed JSON"),
        ("missing_column", r"record 2 has no column 'output'"),
        ("empty", r"no records"),
        ("too_long", r"record 1 has \d+ tokens, more than data.max_length=8"),
        ("wrong_model", r"no-such-model"),
        ("qlora", r"qlora needs a CUDA GPU"),
    ],
)
def test_bad_input_exits_2_and_keeps_run_dir(tiny_world, tmp_path, capsys, case, expected):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    overrides = []
    data = tmp_path / "bad.jsonl"
    if case == "malformed":
        overrides.append(f"data.train={write_jsonl(data, [GOOD, GOOD, '{not json', GOOD])}")
    elif case == "missing_column":
        overrides.append(f"data.train={write_jsonl(data, [GOOD, json.dumps({'instruction': 'x', 'input': ''})])}")
    elif case == "empty":
        overrides.append(f"data.train={write_jsonl(data, [])}")
    elif case == "too_long":
        overrides += ["data.max_length=8", "too_long=error"]
    elif case == "wrong_model":
        overrides.append(f"model.name_or_path={tmp_path / 'no-such-model'}")
    elif case == "qlora":
        overrides.append("update.mode=qlora")
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(config_dict(tiny_world, out)))
    with pytest.raises(SystemExit) as exit_info:
        main(["sft", "--config", str(path), "--overwrite", *overrides])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert __import__("re").search(expected, err), err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]  # nothing lost, nothing moved aside
    assert not list(tmp_path.glob("existing.old-*"))


def test_too_long_examples_are_counted(tiny_world, tmp_path):
    short = {"instruction": "Say yes.", "input": "", "output": "yes"}
    long_answer = {"instruction": "Say yes.", "input": "", "output": "yes " * 60}  # truncated: keeps some answer
    long_prompt = {"instruction": "Say yes. " * 60, "input": "", "output": "yes"}  # dropped: no answer left
    train = write_jsonl(
        tmp_path / "train.jsonl", [json.dumps(r) for r in [short] * 4 + [long_answer] * 2 + [long_prompt] * 3]
    )
    result = run(tiny_world, tmp_path / "run", data={"train": train, "max_length": 40}, training={"max_steps": 1})
    stats = json.loads((result.run_dir / "data_stats.json").read_text())["train"]
    assert (stats["total"], stats["too_long"], stats["truncated"], stats["dropped"]) == (9, 5, 2, 3)
    assert result.metrics["too_long_train"] == 5 and result.metrics["train_examples"] == 6


def test_the_plain_loss_matches_trl_and_bf16_trains_like_fp32(tiny_world, tmp_path, monkeypatch):
    """The model's own cross-entropy (align's SFT loss) is TRL's fused-LM-head loss to float precision,
    step by step; under bf16 autocast (run_stage applies model.precision) the loss starts and falls
    like fp32's, with master weights still float32."""
    from align.runner import run_stage
    from align.sft.trainer import AlignSFTTrainer

    def staged(name, precision):
        config = config_dict(
            tiny_world,
            tmp_path / name,
            model={"precision": precision},
            data={"max_samples": 8},  # two batches, seen again every epoch: the training loss must fall
            training={"max_steps": 12, "learning_rate": 0.01},
        )
        found = losses(run_stage("sft", SFTConfig.model_validate(config), summary=False).run_dir)
        return found, (found[1] + found[2]) / 2, (found[11] + found[12]) / 2

    plain, plain_start, plain_end = staged("plain", "fp32")
    monkeypatch.setattr(AlignSFTTrainer, "_plain_loss_applies", lambda self: False)
    trl, _, _ = staged("trl", "fp32")
    monkeypatch.undo()
    assert plain.keys() == trl.keys() == set(range(1, 13))
    assert all(abs(plain[s] - trl[s]) < 1e-4 * max(1.0, trl[s]) for s in plain), (plain, trl)
    assert plain_end < plain_start - 0.1

    bf16, bf16_start, bf16_end = staged("bf16", "bf16")
    assert abs(bf16_start - plain_start) < 0.02 * plain_start  # same start, bf16 rounding only
    assert bf16_end < bf16_start - 0.5 * (plain_start - plain_end), (bf16, plain)  # falls like fp32
    from safetensors.torch import load_file

    (saved,) = (tmp_path / "bf16" / "final").glob("*.safetensors")
    assert {w.dtype for w in load_file(str(saved)).values()} == {torch.float32}
