"""Measure the text tower on real item texts: speed of torch vs ONNX fp32/INT8/FP16 and their agreement.

    python -m recengine.bench.encoder_measure --n 1000 --threads 1 --out encoder_measure.json

Uses the packaged all-MiniLM-L6-v2 (or --encoder DIR) without fine-tuning (the numbers are about the
graph, not the training) on the embedded MovieLens catalogue. Prints and writes a JSON report: items/s
(wall and CPU) per engine, row cosines of int8/fp16 (and other INT8 settings, for contrast) vs fp32 ONNX,
node counts and fused operators, export timings.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _ort_encode(
    session: Any, tokenizer: Any, texts: list[str], batch_size: int, pad_id: int, pad_to: int | None
) -> tuple[np.ndarray, float, float]:
    from recengine.export.encoder.tokenizer import tokenize_batch

    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(texts)])
    order = np.argsort(-lengths, kind="stable")
    out = None
    start = time.perf_counter()
    cpu = time.process_time()
    for s in range(0, len(texts), batch_size):
        rows = order[s : s + batch_size]
        ids, mask = tokenize_batch(tokenizer, [texts[i] for i in rows], pad_id)
        if pad_to is not None and ids.shape[1] < pad_to:
            extra = pad_to - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=pad_id)
            mask = np.pad(mask, ((0, 0), (0, extra)))
        text, _item = session.run(None, {"input_ids": ids, "attention_mask": mask})
        if out is None:
            out = np.zeros((len(texts), text.shape[1]), dtype=np.float32)
        out[rows] = text
    return out, time.perf_counter() - start, time.process_time() - cpu


def measure(encoder: str | None, n: int, threads: int, batch_size: int, max_length: int,
            out_dir: Path) -> dict[str, Any]:
    import torch

    from recengine.data import load_dataset
    from recengine.export.encoder import (
        TextTowerConfig,
        build_text_tower,
        encode_texts,
        export_encoder,
        load_tokenizer,
        resolve_encoder,
    )
    from recengine.export.onnx_tools import Int8Config, make_session, quantize_int8, row_cosines

    torch.set_num_threads(threads)
    texts = list(load_dataset(None).items.texts[:n])
    source = resolve_encoder(encoder)
    tokenizer, info = load_tokenizer(source, max_length)
    tower = build_text_tower(source, TextTowerConfig(finetune="none", item_dim=64))
    report: dict[str, Any] = {"encoder": source.describe(), "n_texts": len(texts), "threads": threads,
                              "batch_size": batch_size, "max_length": info.max_length,
                              "mean_tokens": float(np.mean([len(e.ids) for e in tokenizer.encode_batch(texts)]))}

    encode_texts(tower, tokenizer, texts[:batch_size], batch_size)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    torch_text, _ = encode_texts(tower, tokenizer, texts, batch_size)
    report["speed"] = {"torch": _speed(len(texts), time.perf_counter() - t0, time.process_time() - c0)}

    t0 = time.perf_counter()
    exported = export_encoder(tower, out_dir, tokenizer, info, parity_texts=texts[:64]).encoder  # frozen: one graph
    report["export_total_s"] = time.perf_counter() - t0
    report["timings"] = exported.timings
    report["parity"] = exported.parity
    report["graph"] = {k: v for k, v in exported.graph.items() if k != "parity_details"}
    report["bytes"] = {v: p.stat().st_size for v, p in exported.paths.items()}

    engines = dict(exported.paths)
    alternatives = {
        "int8_full_range": Int8Config(reduce_range=False),
        "int8_per_tensor": Int8Config(per_channel=False),
        "int8_per_tensor_full_range": Int8Config(per_channel=False, reduce_range=False),
    }
    for name, cfg in alternatives.items():
        engines[name] = quantize_int8(exported.paths["fp32"], out_dir / f"encoder.{name}.onnx", cfg)
    outputs: dict[str, np.ndarray] = {}
    for name, path in engines.items():
        session = make_session(path, threads=threads)
        _ort_encode(session, tokenizer, texts[:batch_size], batch_size, info.pad_id, None)  # warm-up
        outputs[name], wall, cpu = _ort_encode(session, tokenizer, texts, batch_size, info.pad_id, None)
        report["speed"][f"onnx_{name}"] = _speed(len(texts), wall, cpu)
    session = make_session(exported.paths["fp32"], threads=threads)
    _, wall, cpu = _ort_encode(session, tokenizer, texts, batch_size, info.pad_id, pad_to=128)
    report["speed"]["onnx_fp32_padded_to_128"] = _speed(len(texts), wall, cpu)
    report["torch_vs_fp32_max_abs"] = float(np.abs(torch_text.numpy() - outputs["fp32"]).max())
    report["cosine_vs_fp32"] = {}
    for name in engines:
        if name != "fp32":
            cos = row_cosines(outputs["fp32"], outputs[name])
            report["cosine_vs_fp32"][name] = {"mean": float(cos.mean()), "min": float(cos.min())}
    # Single-text latency, the runtime's search/add-item case.
    for name in ("fp32", "int8"):
        session = make_session(engines[name], threads=threads)
        lat = []
        for text in texts[:200]:
            t0 = time.perf_counter()
            _ort_encode(session, tokenizer, [text], 1, info.pad_id, None)
            lat.append(time.perf_counter() - t0)
        report["speed"][f"onnx_{name}_single_text_ms"] = {"p50": float(np.median(lat) * 1e3),
                                                          "p90": float(np.quantile(lat, 0.9) * 1e3)}
    return report


def _speed(n: int, wall: float, cpu: float) -> dict[str, float]:
    """Items per wall second and per CPU second of this process (the latter is what a busy shared
    machine distorts least)."""
    return {"items_per_s": n / wall, "items_per_cpu_s": n / max(cpu, 1e-9)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default=None, help="local HF BERT-family directory (default: packaged MiniLM)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = measure(args.encoder, args.n, args.threads, args.batch_size, args.max_length, Path(tmp))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
