"""`align pipeline`: the whole chain on one config, resumable as a whole.

run(config):
  1. build (or reuse) the demo world;
  2. SFT;
  3. sample k candidates per preference prompt from the SFT model into the annotation store;
  4. annotation: simulated annotators rank now, or (human) stop and say what to serve;
  5. reward model on the exported rankings;
  6. PPO of the SFT policy against that reward model;
  7. align eval: base, SFT, PPO and RAG side by side;
  with rounds: R, steps 3-6 again per round (candidates-r2 ... ppo-r2) before the eval;
  then report.md / report.html. Each finished step is recorded in pipeline_state.json;
  `--resume` skips finished steps and an interrupted stage resumes from its checkpoint.
"""

from __future__ import annotations

import time

from align.config.loader import to_yaml
from align.config.pipeline import PipelineConfig
from align.errors import AlignInputError
from align.pipeline import steps as S
from align.pipeline.progress import PipelineProgress, format_seconds
from align.pipeline.report import build_report
from align.pipeline.state import PipelineState
from align.precision import runs_in_precision
from align.rundir import RunDir, RunResult


@runs_in_precision
def run(config: PipelineConfig) -> RunResult:
    resume = config.output.resume != "never"
    run_dir = RunDir.create(config.output.output_dir or None, "pipeline", config.output.overwrite, config.output.resume)
    state = PipelineState.load(run_dir.path)
    if resume and not state.steps:
        print(f"nothing to resume in {run_dir.path}: starting the pipeline there")
    _check_same_config(run_dir, config, resume)
    run_dir.write_config(to_yaml(config))
    run_dir.write_env()
    waiting = any(info.get("status") == "waiting" for info in state.steps.values())  # resumed before the quota
    ctx = S.Context(config=config, root=run_dir.path.resolve(), resuming_wait=waiting)
    S.preflight(ctx)
    steps = S.steps_for(config)
    progress = PipelineProgress({step.key: step.share for step in steps})
    for step in steps:
        if state.done(step.key) and step.name != "world":  # the world is cheap to re-open and the steps need its path
            progress.announce(step.key, state.seconds(), skipped=True)
            continue
        progress.announce(step.key, state.seconds())
        state.started(step.key)
        started = time.monotonic()
        try:
            outputs = step.run(ctx)
        except S.AnnotationPending as pending:
            state.steps[step.key] = {"status": "waiting"}
            state.save()
            print(f"\nThe pipeline is waiting for human rankings.\n{pending}")
            return RunResult(
                run_dir.path, {"waiting_for_rankings": 1.0}, {"annotation db": ctx.root / "annotations.db"}
            )
        state.finish(step.key, time.monotonic() - started, outputs)
    report = build_report(run_dir.path, state.steps, config.report_samples)
    total = sum(state.seconds().values())
    print(f"pipeline finished in {format_seconds(total)} of stage time; report: {report}")
    metrics = {
        f"{step.key}/{k}": v
        for step in steps
        for k, v in (state.outputs(step.key).get("metrics") or {}).items()
        if isinstance(v, (int, float))
    }
    return RunResult(run_dir.path, metrics, {"report.md": report, "report.html": run_dir.path / "report.html"})


def _check_same_config(run_dir: RunDir, config: PipelineConfig, resume: bool) -> None:
    """Resuming with a different config would mix two experiments in one dir: refuse, say which keys differ."""
    saved = run_dir.file("config.yaml")
    if not (resume and saved.is_file()):
        return
    import yaml

    before = yaml.safe_load(saved.read_text())
    try:  # saved by an older align: its missing keys take today's defaults (a new key is no change)
        before = yaml.safe_load(to_yaml(PipelineConfig.model_validate(before)))
    except ValueError:
        pass  # keys align no longer knows: they differ, and are named below
    after = yaml.safe_load(to_yaml(config))
    before.pop("output", None)
    after.pop("output", None)
    if before != after:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        raise AlignInputError(
            f"{run_dir.path} was started with a different pipeline config (keys differ: {', '.join(changed)}); "
            f"resume with --config {saved}, or start a new output.output_dir"
        )
