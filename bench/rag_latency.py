"""Retrieval speed: index build time and queries/s for BM25 and dense search at 10k and 100k chunks.

    python bench/rag_latency.py                      # 10k and 100k chunks (dense 100k: see below)
    python bench/rag_latency.py --sizes 10000 --queries 100
    python bench/rag_latency.py --dense-full         # really encode all 100k chunks (minutes on CPU)

Chunks are synthetic ~50-word passages of English words (Zipf-distributed over 5k words), each
with a unique planted fact, so every query has one right answer (hit@5 is printed as a sanity
check). Dense build time is the MiniLM encoding of every chunk; without --dense-full, sizes
above --dense-encode-max are timed on the first --dense-encode-max chunks and extrapolated
linearly (encoding is per-chunk work), and the search figure uses a full-size matrix made of
the real embeddings repeated with small noise: search cost depends only on the matrix shape.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from align.config.rag import IndexConfig
from align.retrieval.chunking import Chunk
from align.retrieval.dense import DenseIndex, encode, load_encoder
from align.retrieval.index import RetrievalIndex


def synthetic_chunks(n: int, seed: int = 0) -> tuple[list[Chunk], list[str]]:
    """n passages, each stating one unique fact; and one question per passage."""
    rng = random.Random(seed)
    vocab = english_words()[:5000]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]  # Zipf-like word frequencies
    chunks, questions = [], []
    for i in range(n):
        filler = " ".join(rng.choices(vocab, weights, k=45))
        name = f"entity{i}"
        chunks.append(Chunk(f"doc{i}#0", f"doc{i}", f"{filler}. The secret word of {name} is {vocab[i % len(vocab)]}."))
        questions.append(f"What is the secret word of {name}?")
    return chunks, questions


def english_words() -> list[str]:
    """Whole English words from MiniLM's WordPiece vocabulary (one model token each, like real text)."""
    from align.retrieval.dense import resolve_encoder_path

    lines = (Path(resolve_encoder_path("minilm")) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in lines if w.isalpha() and w.isascii() and len(w) >= 3]


def bm25_figures(chunks: list[Chunk], questions: list[str], k: int) -> dict:
    index = RetrievalIndex(IndexConfig())
    index.chunks = list(chunks)
    started = time.perf_counter()
    index.ensure("bm25")
    index.bm25._fitted()  # bm25s builds its score matrix lazily; count it in the build
    build = time.perf_counter() - started
    started = time.perf_counter()
    hits = index.search(questions, k, "bm25")
    search = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "idx")
        started = time.perf_counter()
        RetrievalIndex.load(Path(tmp) / "idx").bm25._fitted()
        load = time.perf_counter() - started
    return {"build_s": build, "qps": len(questions) / search, "load_s": load, "hit": _hit_rate(hits, questions)}


def dense_figures(
    chunks: list[Chunk], questions: list[str], k: int, encode_max: int, full: bool, batch_size: int
) -> dict:
    encoder = load_encoder("minilm")
    encode(encoder, [c.text for c in chunks[:64]], batch_size)  # warm-up (first-call overheads)
    n = len(chunks)
    n_encode = n if full else min(n, encode_max)
    started = time.perf_counter()
    vectors = encode(encoder, [c.text for c in chunks[:n_encode]], batch_size, progress=True)
    encode_s = time.perf_counter() - started
    build = encode_s * n / n_encode
    if n_encode < n:  # full-size matrix: real rows repeated with noise, renormalised
        reps = int(np.ceil(n / n_encode))
        noise = np.random.default_rng(0).normal(0, 0.01, (reps * n_encode, vectors.shape[1])).astype(np.float32)
        vectors = np.tile(vectors, (reps, 1))[:n] + noise[:n]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = RetrievalIndex(IndexConfig())
    index.chunks = list(chunks)
    index.dense = DenseIndex("minilm")
    index.dense.add(vectors)
    started = time.perf_counter()
    hits = index.search(questions, k, "dense")
    search = time.perf_counter() - started
    query_vectors = encode(encoder, questions, batch_size)
    started = time.perf_counter()
    for row in index.dense.scores(query_vectors):
        np.argpartition(-row, k)[:k]
    matmul = time.perf_counter() - started
    return {
        "build_s": build,
        "extrapolated": n_encode < n,
        "encode_per_s": n_encode / encode_s,
        "qps": len(questions) / search,
        "qps_search_only": len(questions) / matmul,
        "hit": _hit_rate(hits, questions) if n_encode == n else None,
    }


def _hit_rate(hits, questions) -> float:
    wanted = [f"doc{q.split('entity')[1].rstrip('?')}" for q in questions]
    return sum(any(h.chunk.doc_id == w for h in hs) for hs, w in zip(hits, wanted)) / len(questions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--dense-encode-max",
        type=int,
        default=2_000,
        help="Encode at most this many chunks per size (rest extrapolated).",
    )
    parser.add_argument("--dense-full", action="store_true", help="Encode every chunk at every size.")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--skip-dense", action="store_true")
    args = parser.parse_args(argv)

    import torch

    print(
        f"torch threads: {torch.get_num_threads()}, device: {'cuda' if torch.cuda.is_available() else 'cpu'}",
        flush=True,
    )
    rows = []
    for n in args.sizes:
        chunks, questions = synthetic_chunks(n)
        picked = random.Random(1).sample(questions, min(args.queries, n))
        bm = bm25_figures(chunks, picked, args.k)
        print(
            f"[{n} chunks] BM25: build {bm['build_s']:.2f}s, {bm['qps']:.0f} queries/s, load {bm['load_s']:.2f}s, hit@{args.k} {bm['hit']:.2f}",
            flush=True,
        )
        row = {"chunks": n, "bm25": bm}
        if not args.skip_dense:
            de = dense_figures(chunks, picked, args.k, args.dense_encode_max, args.dense_full, args.batch_size)
            print(
                f"[{n} chunks] dense: build {de['build_s']:.1f}s{' (extrapolated)' if de['extrapolated'] else ''} "
                f"({de['encode_per_s']:.0f} chunks/s), {de['qps']:.0f} queries/s incl. query encoding, "
                f"{de['qps_search_only']:.0f} queries/s search only",
                flush=True,
            )
            row["dense"] = de
        rows.append(row)
    print(
        "\n| chunks | BM25 build (s) | BM25 queries/s | dense build (s) | dense queries/s (with encoding) | dense queries/s (search only) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        d = r.get("dense")
        dense = (
            f"{d['build_s']:.1f}{'*' if d['extrapolated'] else ''} | {d['qps']:.0f} | {d['qps_search_only']:.0f}"
            if d
            else "- | - | -"
        )
        print(f"| {r['chunks']} | {r['bm25']['build_s']:.2f} | {r['bm25']['qps']:.0f} | {dense} |")
    if any(r.get("dense", {}).get("extrapolated") for r in rows):
        print("* extrapolated from the measured encoding rate (pass --dense-full to encode everything)")


if __name__ == "__main__":
    sys.exit(main())
