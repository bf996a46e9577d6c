"""`align pipeline` end to end on the tiny world: every stage's output exists and loads,
--resume after a kill in PPO redoes neither SFT nor the reward model, human mode pauses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from align.config import PipelineConfig, load_config
from align.errors import AlignInputError
from align.rundir import RunResult

pytestmark = pytest.mark.heavy


def pipeline_config(repo_root, out, *overrides):
    return load_config(
        PipelineConfig, repo_root / "configs/tiny/pipeline.yaml", [f"output.output_dir={out}", *overrides]
    )


def run_pipeline(config):
    from stages.pipeline import run

    return run(config)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, repo_root):
    os.chdir(repo_root)  # stage configs are named relative to the repository
    out = tmp_path_factory.mktemp("pipeline") / "run"
    # from the shell, as a user runs it, so what it prints can be checked too; every tracker on,
    # offline (W&B offline mode, MLflow's SQLite store in the run dir, Trackio's store in TRACKIO_DIR)
    command = [sys.executable, "-m", "align", "pipeline", "--config", "configs/tiny/pipeline.yaml"]
    trackers = "output.report_to=[tensorboard,wandb,mlflow,trackio]"
    shown = subprocess.run(
        [*command, f"output.output_dir={out}", trackers],
        cwd=repo_root,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "PYTHONWARNINGS": "default",
            "WANDB_MODE": "offline",
            "TRACKIO_DIR": str(out.parent / "trackio"),
        },
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    result = RunResult(out, {}, {"report.md": out / "report.md"})
    return out, result, shown


def test_the_terminal_shows_progress_and_ends_with_sentences(finished):
    out, _, shown = finished
    printed = shown.stdout + shown.stderr
    assert "\x1b[A" not in printed
    for noise in ("FutureWarning", "Setting accelerator to CPU", "Dropping fully masked", "Loading weights"):
        assert noise not in printed, noise
    for line in printed.splitlines():  # no library's own log lines (DEBUG:bm25s:..., INFO:...)
        assert not line.startswith(("DEBUG:", "INFO:", "[transformers] The new embeddings")), line
    assert "pipeline: stage 2/10 sft" in shown.stdout
    tail = shown.stdout.strip().splitlines()
    assert tail[-1].startswith(f"Run dir: {out}; report: {out / 'report.md'}")
    assert any(line.startswith("SFT: exact match ") for line in tail[-8:])
    assert any(line.startswith(("Best alignment method: ", "No method is clearly best: ")) for line in tail[-8:])
    assert "sft/train_loss" not in printed  # the full table is in the report, not the terminal


def test_every_stage_output_exists_and_loads(finished):
    out, result, _ = finished
    from huggingface_hub import ModelCard

    from align.config import ModelConfig
    from align.models import load_causal_lm
    from align.reward.scorer import RewardScorer

    for stage in ("sft", "reward", "ppo", "grpo", "rloo", "dpo"):  # every final model has its card
        assert ModelCard.load(out / stage / "final" / "README.md").data.tags[0] == "align", stage
    state = json.loads((out / "pipeline_state.json").read_text())["steps"]
    assert [s for s, info in state.items() if info["status"] == "done"] == [
        "world",
        "sft",
        "candidates",
        "annotation",
        "reward",
        "ppo",
        "grpo",
        "rloo",
        "dpo",
        "eval",
    ]
    for stage in ("sft", "reward", "ppo", "grpo", "rloo", "dpo", "eval"):
        assert (out / stage / "config.yaml").is_file() and (out / stage / "eval.json").is_file(), stage
    assert load_causal_lm(ModelConfig(name_or_path=str(out / "sft"))) is not None
    assert load_causal_lm(ModelConfig(name_or_path=str(out / "ppo"))) is not None
    scores = RewardScorer(out / "reward").score(["What is 2 + 2?"], ["4"])
    assert scores.shape == (1,) and bool(scores.isfinite().all())
    reward_summary = json.loads((out / "reward" / "eval.json").read_text())["summary"]
    assert 0.5 <= reward_summary["test_annotator_gold_agreement"] <= 1.0  # simulated annotation: gold figures too
    assert 0.0 <= reward_summary["test_trained_model_gold_accuracy"] <= 1.0
    rankings = [json.loads(line) for line in (out / "annotation" / "rankings.jsonl").read_text().splitlines()]
    assert rankings and all(len(r["responses"]) == len(r["ranks"]) >= 2 for r in rankings)
    report = (out / "report.md").read_text()
    for heading in (
        "What each stage changed",
        "Wall time per stage",
        "Training curves",
        "Side by side",
        "Resolved configs",
    ):
        assert heading in report
    table = report.split("## The alignment methods side by side", 1)[1].split("\n## ", 1)[0]
    rows = [
        line.split(" | ")[0].strip("| ") for line in table.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert rows[1:] == ["ppo", "grpo", "rloo", "dpo"]
    assert "Best alignment method: " in table or "No method is clearly best: " in table
    assert re.search(r"^Run \d{4}-\d\d-\d\d on 1 x .+; align .+; seeds: world 0, training: sft \d+, ", report, re.M)
    from align.pipeline.methods import leader, method_rows

    best = leader(out, method_rows(out, state))
    samples = report.split("## Same questions, each system", 1)[1].split("\n## ", 1)[0]
    assert f"| question | answer | base | sft | {best.best['method']} | sft+rag |" in samples
    for chart in ("heldout", "seen"):  # the eval charts are in the report, not linked
        assert f"![align eval: {chart}](eval/eval_{chart}.png)" in report
    assert "![gold against KL](methods_frontier.png)" in table and (out / "methods_frontier.png").is_file()
    eval_systems = json.loads((out / "eval" / "eval.json").read_text())["parts"]["seen"]
    assert {"ppo", "grpo", "rloo", "dpo"} <= set(eval_systems)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    assert "| --- |" not in html and "| stage | figure |" not in html  # tables inside <details> are tables too
    assert result.artifacts["report.md"] == out / "report.md"


TRAINED = {"sft": "sft", "reward": "reward", "ppo": "ppo", "grpo": "ppo", "rloo": "ppo", "dpo": "dpo", "eval": "eval"}


def test_every_stage_is_one_tracker_run_grouped_by_the_pipeline(finished):
    """report_to in the pipeline's output reaches every stage: one W&B, MLflow and Trackio run per
    stage, all in the pipeline's group, with the RL stages' samples tables. (Before the resume
    test below, which reruns the later stages without trackers.)"""
    import sqlite3

    import mlflow

    out, _, shown = finished
    for folder in TRAINED:
        (run,) = (out / folder / "wandb").glob("offline-run-*")
        assert out.name.encode() in next(run.glob("run-*.wandb")).read_bytes(), folder  # the group
        tables = list((run / "files" / "media" / "table").glob("samples_*.table.json"))
        assert bool(tables) == (TRAINED[folder] == "ppo"), folder
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("align").experiment_id])
    assert sorted(r.data.tags["align.stage"] for r in runs) == sorted(TRAINED.values())
    assert {r.data.tags["align.group"] for r in runs} == {out.name}
    assert {r.data.tags["align.run_dir"] for r in runs} == {str((out / f).resolve()) for f in TRAINED}
    assert {r.data.params["output.output_dir"] for r in runs} == {str(out / f) for f in TRAINED}  # the resolved config
    db = sqlite3.connect(out.parent / "trackio" / "align.db")
    configs = {name: json.loads(config) for name, config in db.execute("select run_name, config from configs")}
    assert sorted(configs) == sorted(f"{stage}:{folder}" for folder, stage in TRAINED.items())
    assert {c["output"]["group"] for c in configs.values()} == {out.name}


def test_the_report_ends_with_next_steps_whose_commands_run(finished, tmp_path):
    """Where the models are and what to do next: the export command runs as the report writes it
    (a GGUF file for llama.cpp), the chat command names models that exist."""
    import shlex

    out, _, _ = finished
    report = (out / "report.md").read_text()
    section = report.split("## Next steps", 1)[1].split("\n## ", 1)[0]
    for folder in ("sft", "ppo", "grpo", "rloo", "dpo"):
        assert f"`{out / folder}`" in section, folder
    commands = re.findall(r"`(align [^`]+)`", section)
    chat = next(c for c in commands if c.startswith("align chat"))
    assert all((out / Path(p).name / "final").is_dir() for p in shlex.split(chat)[2:])
    export = next(c for c in commands if c.startswith("align export"))
    shown = subprocess.run(
        [sys.executable, "-m", "align", *shlex.split(export)[1:]],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert (tmp_path / shlex.split(export)[-1]).stat().st_size > 0
    assert "annotation.mode: human" in section and "configs/my_data/pipeline.yaml" in section


def test_resume_after_a_kill_in_ppo_skips_sft_and_reward(finished, repo_root, capsys):
    out, _, _ = finished
    # what a kill in the middle of PPO leaves: state 'running', no final/, no eval
    state_path = out / "pipeline_state.json"
    state = json.loads(state_path.read_text())
    state["steps"]["ppo"] = {"status": "running"}
    state["steps"].pop("eval")
    state_path.write_text(json.dumps(state))
    shutil.rmtree(out / "ppo" / "final")
    shutil.rmtree(out / "eval")
    before = {stage: (out / stage / "final").stat().st_mtime_ns for stage in ("sft", "reward")}

    run_pipeline(pipeline_config(repo_root, out, "output.resume=auto"))

    assert {stage: (out / stage / "final").stat().st_mtime_ns for stage in ("sft", "reward")} == before
    assert (out / "ppo" / "final").is_dir() and (out / "eval" / "eval.json").is_file()
    printed = capsys.readouterr().out
    assert "stage 2/10 sft · already done, skipped" in printed
    assert "stage 5/10 reward · already done, skipped" in printed


def test_resume_with_a_changed_config_is_refused(finished, repo_root):
    out, _, _ = finished
    with pytest.raises(AlignInputError, match="different pipeline config .*candidates"):
        run_pipeline(pipeline_config(repo_root, out, "output.resume=auto", "candidates.k=2"))


def test_human_annotation_pauses_then_refuses_to_resume_before_quota(finished, repo_root, tmp_path):
    done, _, _ = finished
    out = tmp_path / "human"
    out.mkdir()
    shutil.copytree(done / "sft", out / "sft")  # reuse the finished SFT run: only the later steps are new
    state = json.loads((done / "pipeline_state.json").read_text())
    (out / "pipeline_state.json").write_text(json.dumps({"steps": {k: state["steps"][k] for k in ("world", "sft")}}))
    config = pipeline_config(repo_root, out, "annotation.mode=human", "output.resume=auto")

    result = run_pipeline(config)
    assert result.metrics == {"waiting_for_rankings": 1.0}
    assert json.loads((out / "pipeline_state.json").read_text())["steps"]["annotation"]["status"] == "waiting"
    with pytest.raises(
        AlignInputError, match=r"(?s)annotation quota not met yet: .* more rankings are needed.*align annotate serve"
    ):
        run_pipeline(config)


def test_missing_stage_config_is_a_clear_error(tmp_path, repo_root):
    config = yaml.safe_load((repo_root / "configs/tiny/pipeline.yaml").read_text())
    config["reward"]["config"] = "configs/tiny/nope.yaml"
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "align", "pipeline", "--config", str(path), f"output.output_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=300,
    )
    assert out.returncode == 2
    assert "reward.config = 'configs/tiny/nope.yaml': no such file or directory" in out.stderr
    assert not (tmp_path / "run").exists()


def test_stage_output_named_but_missing_fails_before_any_work(tmp_path, repo_root):
    eval_config = yaml.safe_load((repo_root / "configs/tiny/eval.yaml").read_text())
    eval_config["systems"]["extra"] = {"model": "runs/never-trained/final"}
    eval_path = tmp_path / "eval.yaml"
    eval_path.write_text("# align eval --config eval.yaml\n" + yaml.safe_dump(eval_config))
    config = yaml.safe_load((repo_root / "configs/tiny/pipeline.yaml").read_text())
    config["eval"]["config"] = str(eval_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "align", "pipeline", "--config", str(path), f"output.output_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "runs/never-trained/final" in out.stderr
    assert not (tmp_path / "run" / "sft").exists()


def report_figures(report: str) -> set[str]:
    """Figure names in report.md: the `figure` column of stage tables and the columns of the
    system tables, with the prefixes the glossary explains stripped (the methods table has
    headings for people)."""
    names, header = set(), None
    for line in report.splitlines():
        if not line.startswith("| "):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            if cells[0] == "system":
                names.update(c.split(" ")[-1] for c in cells[1:] if c not in ("wall time",))
            continue
        if "---" not in line and header[:2] == ["stage", "figure"]:
            names.add(cells[1])
    stripped = set()
    for name in names:
        name = re.sub(r"^eval_[a-z]+_", "", name)
        name = re.sub(r"^(heldout|seen)/[\w+]+/", "", name)
        name = re.sub(r"^(test|validation)_", "", name)
        name = re.sub(r"^(base|tuned|trained|untrained|implicit)_", "", name)
        stripped.add(name)
    return stripped


def test_the_glossary_defines_every_figure_in_the_report(finished, repo_root):
    out, _, _ = finished
    figures = report_figures((out / "report.md").read_text())
    assert {"gold_mean", "kl_to_reference", "forgetting_ratio", "ece", "kendall_tau", "token_f1"} <= figures
    glossary = (repo_root / "docs" / "glossary.md").read_text()
    defined = set(re.findall(r"`([a-z0-9_/]+)`", glossary))
    assert not figures - defined, sorted(figures - defined)


def test_the_html_report_fits_a_1280_pixel_window_with_tables_for_people(finished):
    """report.html in Chromium at 1280 x 800: nothing wider than the window, the methods table
    headed in words, no Markdown pipe text left, the charts drawn in the page."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/services.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    out, _, _ = finished
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto((out / "report.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        widest = page.evaluate(
            "Math.max(...[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().right))"
        )
        assert widest <= 1280
        headings = page.evaluate("[...document.querySelectorAll('th')].map(th => th.innerText)")
        assert "gold score, SFT" in headings and "KL to SFT (nats)" in headings and "sft gold_mean" not in headings
        assert "| --- |" not in page.evaluate("document.body.innerText")
        shown = page.evaluate("[...document.images].filter(i => i.naturalWidth > 0).map(i => i.alt)")
        assert {"align eval: heldout", "align eval: seen", "gold against KL"} <= set(shown)  # drawn, not linked
        page.screenshot(path=str(out / "report-1280.png"), full_page=False)
        browser.close()
