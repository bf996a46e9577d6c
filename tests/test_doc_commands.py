"""Every command README.md and the docs show, run as a user would copy it.

The commands run in order (README, getting started, then the other pages), in one sandbox
folder holding a copy of `configs/` in which the demo world is the tiny one and every stage is
cut to a few steps: a command names `configs/sft_demo.yaml` and gets the same stage, keys and
files on a ~100k-parameter model. Names a user replaces with their own (`my_chats.jsonl`,
`/models/...`, `URL`, a hub id) are files this test writes: a hub id is a tiny Qwen2 placed in an
offline hub cache, so the hub-id path of `from_pretrained` runs as written. A command that cannot
run here is listed in `NOT_RUN` with the reason; a new command in the docs fails this test until
it runs or is listed."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_readme import commands, documents

pytestmark = pytest.mark.heavy

# Launches this machine cannot make, and commands that need what CI does not have; each is
# still validated (files, keys, values) by tests/test_readme.py.
NOT_RUN = {
    "deepspeed --num_gpus 8": "8 GPUs",
    "accelerate launch": "GPUs for ZeRO-3 under accelerate (the same code runs in the ZeRO-3 tests)",
    "torchrun --nproc_per_node 8": "8 GPUs",
    "deepspeed --hostfile": "two nodes with 8 GPUs each",
    "sbatch ": "a SLURM cluster",
    "DS_ACCELERATOR=cpu deepspeed --num_gpus 2 --no_local_rank": "a sketch (`--config ...`); tests/test_reward_distributed.py",
    "DS_ACCELERATOR=cpu deepspeed --num_gpus 2 align sft": "two ranks for minutes; tests/test_sft_deepspeed.py",
    "DS_ACCELERATOR=cpu deepspeed --num_gpus 2 --module align sft": "two ranks; tests/test_sft_deepspeed.py",
    "align models pull": "the registry's SmolLM2 package (a checksum of the real file); tests/test_catalog.py pulls a fake one",
    "align data pull": "the registry's benchmark packages; tests/test_data_catalog.py pulls fake ones",
    "align data make": "pulled Alpaca and MATH data; tests/test_data_make.py writes both from fixtures",
    "align eval --config configs/smollm2/eval_benchmarks.yaml": "pulled benchmark data; tests/test_eval_benchmarks.py",
    "align pipeline --config configs/smollm2_real/pipeline.yaml": "pulled Alpaca and preference data; tests/test_pipeline_my_data.py runs the same pipeline on data of its own",
}

TODAY = datetime.date.today().isoformat()


def _not_run(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def ordered_commands(repo_root: Path) -> list[tuple[str, str]]:
    """(page, command), each command once, README and getting started first (they make what
    the other pages build on: runs/sft-demo, runs/reward-demo, ...)."""
    pages = documents(repo_root)
    first = ["README.md", "docs/getting-started.md"]
    order = first + [p for p in pages if p not in first]
    seen, out = set(), []
    for page in order:
        for command in commands(pages[page]):
            if command not in seen:
                seen.add(command)
                out.append((page, command))
    return out


# ----------------------------------------------------------------------------- the sandbox

SHRINK = {  # per stage (a YAML's first line names it): a few steps on the tiny world
    "sft": ["training.max_steps=2", "eval.max_examples=4", "eval.max_retention_lines=4"],
    "reward": ["training.max_steps=2"],
    "dpo": ["training.max_steps=2", "eval.max_prompts=4"],
    "ppo": ["schedule.steps=1", "eval.max_prompts=4"],
    "rag": ["max_questions=4"],
    "eval": ["max_questions=4"],
    "annotate": ["generate.max_prompts=4"],
    "pipeline": ["candidates.max_prompts=8"],
}
SIZES = {"candidates.budget=200": "candidates.budget=4"}  # a command line's size that only the demo world holds
TINY = (("demo:demo/", "demo:tiny/"), ("models:smollm2-135m-instruct", "demo:tiny/model"))


TEAM_DB = "postgresql://align@localhost/annotations"  # configs/annotate_team.yaml's database


def team_db(sandbox: Path) -> str:
    """The SQLite file that stands in for the team page's PostgreSQL database."""
    return f"sqlite:///{sandbox}/team_annotations.db"


def sandbox_configs(repo_root: Path, sandbox: Path) -> None:
    """configs/ copied with the tiny world for the demo one, a SQLite file for the team's database,
    and each stage cut short."""
    from align.config import apply_overrides

    shutil.copytree(repo_root / "configs", sandbox / "configs")
    for path in (sandbox / "configs").rglob("*.yaml"):
        text = path.read_text()
        match = re.match(r"# align (\w+)", text)
        if not match or match.group(1) not in SHRINK:
            continue
        for old, new in (*TINY, (TEAM_DB, team_db(sandbox))):
            text = text.replace(old, new)
        data = yaml.safe_load(text)
        if data.get("world") == "demo":
            data["world"] = "tiny"
        path.write_text(yaml.safe_dump(apply_overrides(data, SHRINK[match.group(1)]), sort_keys=False))


def tiny_qwen_in_hub_cache(tiny_world: Path, hub: Path, repo_id: str) -> None:
    """A random-weight Qwen2 with the tiny world's tokenizer, stored the way the hub cache
    stores a downloaded snapshot, so `from_pretrained(repo_id)` finds it offline."""
    import transformers
    from architectures import build

    commit = "0" * 40
    snapshot = hub / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_world / "model")
    build("qwen2", snapshot, tokenizer, max_position_embeddings=512)  # configs/my_data/ trains on 512 tokens
    (snapshot.parents[1] / "refs").mkdir(parents=True)
    (snapshot.parents[1] / "refs" / "main").write_text(commit)


def user_files(tiny_world: Path, sandbox: Path, hub: Path) -> None:
    """What the docs ask a user to bring: chats, rankings, items, documents, a model folder, a GGUF file."""
    from align.gguf.export import export_run

    chats = (tiny_world / "sft" / "train.jsonl").read_text().splitlines()[:32]
    for name in ("my_chats.jsonl", "my_data.jsonl"):
        (sandbox / name).write_text("\n".join(chats) + "\n")
    prompts = [json.loads(line)["prompt"] for line in (tiny_world / "preference" / "train.jsonl").open()][:24]
    with (sandbox / "my_rankings.jsonl").open("w") as out, (sandbox / "items.jsonl").open("w") as items:
        for i, prompt in enumerate(prompts):
            responses = ["Sure! It is done.", "no", "I do not know."]
            out.write(json.dumps({"prompt": prompt, "responses": responses, "ranks": [1, 3, 2]}) + "\n")
            items.write(json.dumps({"prompt": prompt, "responses": responses, "id": f"mine-{i}"}) + "\n")
    data = sandbox / "data"  # what configs/my_data/ names
    data.mkdir()
    (data / "sft.jsonl").write_text("\n".join(chats) + "\n")
    shutil.copy(sandbox / "my_rankings.jsonl", data / "preferences.jsonl")
    (data / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    qa = [json.loads(line) for line in (tiny_world / "rag" / "qa_heldout.jsonl").open()][:8]
    (data / "qa.jsonl").write_text(
        "".join(json.dumps({"question": q["question"], "answer": q["answers"][0]}) + "\n" for q in qa)
    )
    shutil.copy(tiny_world / "rag" / "docs.jsonl", sandbox / "docs.jsonl")
    (sandbox / "more_docs").mkdir()
    (sandbox / "more_docs" / "notes.txt").write_text("Zorbin trades salt.\n\nThe river runs north.\n")
    models = sandbox / "models"
    shutil.copytree(tiny_world / "model", models / "Llama-3.2-1B")
    export_run(str(tiny_world / "model"), models / "llama-3.2-1b-instruct.Q8_0.gguf", dtype="q8_0")
    tiny_qwen_in_hub_cache(tiny_world, hub, "Qwen/Qwen2.5-0.5B-Instruct")


def team_database(db: str) -> None:
    """The database security.md's commands manage: it has the people they reset and remove."""
    from annotation_ui.store import Store

    store = Store(db)
    for name, role in (("lead", "admin"), ("bob", "annotator"), ("carol", "annotator")):
        store.add_annotator(name, "a-long-password", role=role)
    store.close()


def people_rank(db: str) -> None:
    """What happens between `serve` and the reward model on the team page: each person ranks every
    item they are handed (the first response best, as the items were written)."""
    from annotation_ui.store import Store

    store = Store(db)
    for person in ("alice", "lead"):
        while (item := store.next_item(person)) is not None:
            store.submit(person, item.item_id, list(range(1, len(item.responses) + 1)))
    store.close()


BETWEEN = {  # what people do before a command, by the command's start
    "align reward --config configs/my_data/reward.yaml model.name_or_path=runs/sft-my-data data.train=postgresql": (
        lambda sandbox: people_rank(team_db(sandbox))
    ),
}


def placeheld(command: str, sandbox: Path, db: str) -> str:
    """The command with a user's own names pointed at this sandbox's files."""
    command = re.sub(r"\s\[[^\]]*\]", "", command)  # optional parts shown as [--count N]
    for old, new in SIZES.items():
        command = command.replace(old, new)
    command = command.replace("/models/", f"{sandbox}/models/")
    command = command.replace("--db URL", f"--db {db}")
    command = command.replace("postgresql://align@db/annotations", db)
    command = command.replace("postgresql://align@db/new_annotations", f"sqlite:///{sandbox}/restored.db")
    command = command.replace(f"{TEAM_DB}_restored", f"sqlite:///{sandbox}/restored_team.db")
    command = command.replace(TEAM_DB, team_db(sandbox))
    command = command.replace("annotations-2026-12-07.db", f"annotations-{TODAY}.db")
    return command


# ----------------------------------------------------------------------------- running one

SERVES = ("align annotate serve", "align chat")  # start a web page or a prompt: probed, then stopped


def run_served(command: str, cwd: Path, env: dict) -> tuple[int, str]:
    """Start a server, wait for its page to answer (or a chat to answer a line), stop it."""
    if "--ui" not in command and command.startswith("align chat"):
        done = subprocess.run(
            command, shell=True, cwd=cwd, env=env, input="Hello\n/quit\n", capture_output=True, text=True, timeout=600
        )
        return done.returncode, done.stdout + done.stderr
    log = cwd / "served.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, shell=True, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            found = re.search(r"http://(?:127\.0\.0\.1|localhost|0\.0\.0\.0):(\d+)", log.read_text())
            if found:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{found.group(1)}/", timeout=10) as page:
                        return (0 if page.status == 200 else 1), log.read_text()
                except OSError:
                    pass
            time.sleep(1)
        return 1, "no page answered\n" + log.read_text()
    finally:  # the shell and the server it started: the whole process group
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:  # it had stopped by itself
            pass
        process.wait(30)


def run_one(command: str, cwd: Path, env: dict) -> tuple[int, str]:
    if command.startswith(SERVES):
        return run_served(command, cwd, env)
    stdin = "a-long-password\na-long-password\n" if "add-user" in command else None
    done = subprocess.run(
        command, shell=True, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=900
    )
    return done.returncode, done.stdout[-3000:] + done.stderr[-3000:]


def test_every_command_in_the_docs_runs_as_written(repo_root: Path, tiny_world: Path, tmp_path: Path):
    sandbox, hub = tmp_path / "work", tmp_path / "hub"
    sandbox.mkdir()
    db = f"sqlite:///{sandbox}/team.db"
    sandbox_configs(repo_root, sandbox)
    user_files(tiny_world, sandbox, hub)
    team_database(db)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(hub),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo_root),
    }
    ran, failed, skipped = [], [], []
    for page, command in ordered_commands(repo_root):
        why = _not_run(command)
        if why:
            skipped.append(command)
            continue
        for start, happens in BETWEEN.items():
            if command.startswith(start):
                happens(sandbox)
        runnable = placeheld(command, sandbox, db)
        started = time.time()
        code, output = run_one(runnable, sandbox, env)
        ran.append((command, round(time.time() - started, 1)))
        print(f"{ran[-1][1]:6.1f} s  exit {code}  {command}", flush=True)
        if code != 0:
            failed.append(f"{page}: `{command}` exited {code}\n{output[-2500:]}")
    assert not failed, "\n\n".join(failed)
    assert len(ran) >= 60 and len(skipped) < len(ran) / 3, (len(ran), len(skipped))  # most of what the docs show runs


def test_every_reason_for_not_running_a_command_is_still_needed(repo_root: Path):
    """A NOT_RUN entry whose command left the docs goes too, so the list cannot hide a new one."""
    shown = [command for _, command in ordered_commands(repo_root)]
    stale = [prefix for prefix in NOT_RUN if not any(c.startswith(prefix) for c in shown)]
    assert not stale, stale
    for why in NOT_RUN.values():
        for test_file in re.findall(r"tests/\w+\.py", why):
            assert (repo_root / test_file).is_file(), why


def test_the_service_files_run_what_the_team_page_runs(repo_root: Path):
    """The systemd units start the commands the team page shows (and the doc test runs)."""
    shown = {command for _, command in ordered_commands(repo_root)}
    deploy = repo_root / "configs" / "deploy"
    serve = re.search(r"^ExecStart=(.*)$", (deploy / "align-annotate.service").read_text(), re.M).group(1)
    assert serve.replace("/srv/align/.venv/bin/align", "align") in shown
    backup = re.search(r"^ExecStart=/bin/sh -c '(.*)'$", (deploy / "align-annotate-backup.service").read_text(), re.M)
    command = backup.group(1).replace("/srv/align/.venv/bin/align", "align")
    before, after = command.split(" --out ")
    assert after == "backups/annotations-$(date +%%F-%%H).db"  # %% is systemd's %: one file an hour
    assert any(c.startswith(f"{before} --out backups/annotations-") for c in shown)
    # a timer starts the service of its own name: both files must be there, the timer hourly
    assert "OnCalendar=hourly" in (deploy / "align-annotate-backup.timer").read_text()
