"""The README and the docs site must stay true: every command they show names a command, files
and config keys that exist (and validates as the CLI would), and they speak to users, not about
our own work items."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from align.config import STAGE_CONFIGS, apply_overrides, read_yaml, validate

LAUNCHERS = ("align ", "deepspeed ", "accelerate launch ", "torchrun ", "sbatch ", "DS_ACCELERATOR=cpu deepspeed ")


def commands(readme: str) -> list[str]:
    """Shell lines from the README: fenced bash blocks and inline `...` code that starts with a launcher."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        block = block.replace("\\\n", " ").replace("$(which align)", "align")  # continued lines; launcher form
        lines += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    lines += re.findall(r"`((?:DS_ACCELERATOR=cpu )?(?:deepspeed|torchrun|accelerate launch|sbatch) [^`]+)`", readme)
    return [line.split("  #")[0].strip() for line in lines if line.startswith(LAUNCHERS)]


def stage_and_args(tokens: list[str]) -> tuple[str | None, list[str]]:
    """Find `align <stage>` (or `-m/--module align <stage>`) and the arguments after it."""
    for i, token in enumerate(tokens):
        if token in ("align", ".venv/bin/align") and i + 1 < len(tokens) and tokens[i + 1] in STAGE_CONFIGS:
            return tokens[i + 1], tokens[i + 2 :]
    return None, []


def documents(repo_root: Path) -> dict[str, str]:
    """README.md and every page of the docs site."""
    pages = [repo_root / "README.md", *sorted((repo_root / "docs").rglob("*.md"))]
    return {str(p.relative_to(repo_root)): p.read_text(encoding="utf-8") for p in pages}


def test_every_launch_example_refers_to_existing_files_and_keys(repo_root: Path):
    found = [c for text in documents(repo_root).values() for c in commands(text)]
    assert any(c.startswith("deepspeed ") for c in found) and any("torchrun" in c for c in found)
    assert any(c.startswith("sbatch ") for c in found) and any("accelerate launch" in c for c in found)
    checked = 0
    for command in found:
        tokens = shlex.split(command)
        for flag in ("--hostfile", "--config_file"):
            if flag in tokens:
                assert (repo_root / tokens[tokens.index(flag) + 1]).is_file(), command
        if tokens[0] == "sbatch":
            assert (repo_root / tokens[1]).is_file(), command
            continue
        stage, args = stage_and_args(tokens)
        if stage is None or "--config" not in args:
            continue
        config_path = repo_root / args[args.index("--config") + 1]
        assert config_path.is_file(), f"{command}: no {config_path}"
        overrides = [a for a in args if re.match(r"^[a-z_][\w.]*=", a)]  # not syntax sketches like [key=value ...]
        data = apply_overrides(read_yaml(config_path), overrides)
        validate(STAGE_CONFIGS[stage], data, command)  # unknown keys or bad values fail here
        for override in overrides:
            key, value = override.split("=", 1)
            if key == "deepspeed":
                assert (repo_root / value).is_file(), command
        checked += 1
    assert checked >= 20


def test_slurm_script_uses_existing_config_and_keys(repo_root: Path):
    script = (repo_root / "configs/cluster/slurm_sft.sbatch").read_text()
    body = script.split("srun ", 1)[1].replace("\\\n", " ")
    tokens = shlex.split(
        body.replace("$SLURM_JOB_ID", "1").replace('"$SLURM_NNODES"', "2").replace('"$head_node:29500"', "h:1")
    )
    stage, args = stage_and_args(tokens)
    assert stage == "sft"
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    validate(STAGE_CONFIGS[stage], apply_overrides(read_yaml(repo_root / args[args.index("--config") + 1]), overrides))


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one(repo_root: Path):
    readme = (repo_root / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "pip install torch==2.13.0" in lines[0] and "align pipeline" in lines[0]
    ci = (repo_root / ".ci/run").read_text()
    assert lines[1].strip() in ci


def test_every_document_a_source_file_names_exists(repo_root: Path):
    """Docstrings and docs point at docs/design.md, README.md...: each must be in the repository."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.md", "*.toml", "*.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    named = set()
    for path in tracked:
        text = (repo_root / path).read_text(encoding="utf-8")
        named |= {m for m in re.findall(r"\b((?:[\w-]+/)*[A-Z][\w-]*\.md|docs/[\w/-]+\.md)\b", text)}
    assert "docs/design.md" in named and "README.md" in named
    missing = sorted(n for n in named if not (repo_root / n).is_file())
    assert not missing, f"files name documents that do not exist: {missing}"


def test_every_align_command_in_the_docs_exists(repo_root: Path):
    """`align X ...`: X is a command the CLI has, a named model is in the catalog, a config file exists."""
    from align import catalog
    from align.cli import app

    typer_click = __import__("typer").main.get_command(app)
    known = set(typer_click.commands)
    for page, text in documents(repo_root).items():
        for command in commands(text):
            tokens = shlex.split(command)
            if "align" not in tokens and ".venv/bin/align" not in tokens:
                continue
            at = tokens.index("align") if "align" in tokens else tokens.index(".venv/bin/align")
            if at + 1 >= len(tokens) or tokens[at + 1].startswith("-"):
                continue
            sub = tokens[at + 1]
            assert sub in known, f"{page}: `{command}`: align has no command {sub!r}"
            if tokens[at + 1 : at + 3] == ["models", "pull"]:
                catalog.lookup(tokens[at + 3])  # raises for an unknown name
            if "--config" in tokens:
                path = tokens[tokens.index("--config") + 1]
                assert (repo_root / path).is_file() or path in ("ppo.yaml",), f"{page}: `{command}`: no {path}"


def test_the_commands_that_train_nothing_run(repo_root: Path, tmp_path):
    """What the docs show for a bug report and for finding models runs, as shown."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ALIGN_CACHE": str(tmp_path / "cache")}
    for args in (["env", "--config", "configs/annotate_demo.yaml"], ["models", "list"]):
        shown = [c for text in documents(repo_root).values() for c in commands(text) if f"align {' '.join(args)}" in c]
        assert shown, f"the docs no longer show align {' '.join(args)}"
        result = subprocess.run(
            [sys.executable, "-m", "align", *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
    assert "smollm2-135m-instruct" in result.stdout


def test_the_docs_speak_to_users_not_about_our_work_items(repo_root: Path):
    for page, text in documents(repo_root).items():
        for pattern in (r"[Ii]ssue #?\d+", r"\(#\d+\)", r"target (is )?met", r"\*\*met\*\*", r"issue's (aim|target)"):
            found = re.search(pattern, text)
            assert found is None, f"{page}: {found.group(0)!r}"


def test_readme_is_a_front_page(repo_root: Path):
    lines = (repo_root / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)


def test_the_site_builds_strict_and_lists_every_page(repo_root: Path, tmp_path):
    """`mkdocs build --strict` (as CI runs it): a broken link, a missing page or an unknown
    config-keys marker fails. Every page is in the navigation."""
    import subprocess
    import sys

    import yaml as yaml_lib

    nav = yaml_lib.safe_load((repo_root / "mkdocs.yml").read_text())["nav"]

    def pages(entry):
        if isinstance(entry, str):
            return [entry]
        if isinstance(entry, list):
            return [p for e in entry for p in pages(e)]
        return [p for v in entry.values() for p in pages(v)]

    listed = set(pages(nav))
    on_disk = {str(p.relative_to(repo_root / "docs")) for p in (repo_root / "docs").rglob("*.md")}
    assert on_disk == listed, (on_disk - listed, listed - on_disk)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=repo_root,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sft_page = (tmp_path / "site" / "stages" / "sft" / "index.html").read_text()
    assert "training.learning_rate" in sft_page and "config-keys:" not in sft_page
