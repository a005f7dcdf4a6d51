"""The bundle's ONNX models behind small typed calls: encoder (and, split, its item head), user tower, fusion head.

Variant choice: on the CPU the INT8 models (dynamic per-channel quantisation) where the bundle has them
(`cpu_features.choose_cpu_variant`: fp32 instead only where full-range int8 weights could saturate on a CPU
without VNNI/AMX; the reason per model is `ModelSet.variant_reasons`), on the GPU FP16 (inputs/outputs stay
fp32/int64); `variant=` overrides for every model. Sessions are created once per engine. On the GPU the
encoder pads each batch to a (batch, sequence) bucket so a small, fixed set of shapes gets captured as CUDA
graphs (see `sessions.CudaGraphRunner`).

Items encoded to be stored (`Engine.add_items`, `Engine.reencode_items`) go through the *item encoder*
(`ModelSet.item_variant`): fp32 where the serving encoder is INT8 and the bundle has fp32 weights, else the
serving encoder itself. Why: a stored vector is ranked for every user from then on, while a query vector
serves one request; and the export encoded the catalogue in fp32, so an item added live lands where a
catalogue item with the same text sits (the INT8 encoder's item vectors have a mean cosine of 0.99 to
fp32's, which cost 6.4 % of Book-Crossing's hybrid cold Recall@20). The price is throughput of adding items
(INT8 about 2x faster on an AVX-512 VNNI CPU) and the fp32 session's memory, paid on the first add only.

Split encoders (`models.item_head`, docs/bundle.md "Split encoder"): the encoder is the pre-trained model
and returns `text_embedding` and `item_states`; the item head (the fine-tuned layers) turns those states
into `item_vector`. `encode_queries` (search) runs the encoder alone; `encode` runs both. The item head
loads in the encoder's variant, for serving and for stored items alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import BundleReader
from .bundle.format import ITEM_HEAD, MODEL_NAMES, check_session_io, history_inputs, left_pad
from .cpu_features import CpuFeatures, choose_cpu_variant
from .cpu_features import detect as detect_cpu
from .errors import BundleError, RequestError
from .sessions import CPU_ENCODE_ROWS, CudaGraphRunner, Session, SessionConfig, bucket, make_session
from .tokenize import TextTokenizer

VARIANTS = ("fp32", "int8", "fp16")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
SEQ_BUCKETS = (16, 32, 64, 128, 256, 512)


def pick_variant(available: Sequence[str], device: str, requested: str | None, model: str,
                 quantization: Mapping[str, Any] | None = None, cpu: CpuFeatures | None = None,
                 dropped: Collection[str] = ()) -> str:
    """The variant to load for `model`: the requested one, else fp16 on GPU, else on the CPU what
    `cpu_features.choose_cpu_variant` picks for this CPU (int8, or fp32 where full-range int8 weights can
    saturate), else fp32. A requested variant the export dropped from this model for failing parity
    (`dropped`, from `metrics.parity`) is served by fp32: the export measured that combination as the
    variant's pipeline; any other missing variant is a BundleError."""
    if requested is not None:
        if requested not in VARIANTS:
            raise RequestError(f"variant must be one of {', '.join(VARIANTS)}, got {requested!r}")
        if requested not in available and requested in dropped and "fp32" in available:
            return "fp32"
        if requested not in available:
            raise BundleError(f"model {model} has no {requested} variant in this bundle (has: {', '.join(available)})")
        return requested
    if device != "cuda" and cpu is not None and any(v in VARIANTS for v in available):
        return choose_cpu_variant([v for v in available if v in VARIANTS], quantization, cpu).variant
    preferred = ("fp16", "fp32", "int8") if device == "cuda" else ("int8", "fp32", "fp16")
    for name in preferred:
        if name in available:
            return name
    raise BundleError(f"model {model} lists no usable variant (has: {', '.join(available) or 'none'})")


def item_encoder_variant(available: Sequence[str], serving: str, device: str, requested: str | None,
                         dropped: Collection[str] = ()) -> str:
    """The encoder variant for items that get stored (see the module docstring): `requested` if given (as
    `pick_variant` resolves it), else fp32 where the serving encoder is int8 on the CPU and fp32 is in the
    bundle, else the serving variant."""
    if requested is not None:
        return pick_variant(available, device, requested, "encoder", dropped=dropped)
    if device != "cuda" and serving == "int8" and "fp32" in available:
        return "fp32"
    return serving


def head_variant(available: Sequence[str], encoder: str, device: str) -> str:
    """The item head's variant beside an encoder serving `encoder`: the same one where the head has it (the
    export writes and trims the two together), else fp32, else what `pick_variant` picks; either head
    variant takes the encoder's float32 `item_states`, so a mix is correct, only not what the export measured."""
    if encoder in available:
        return encoder
    if "fp32" in available:
        return "fp32"
    return pick_variant(available, device, None, ITEM_HEAD)


def dropped_variants(manifest: Mapping[str, Any], model: str) -> frozenset[str]:
    """Variants the export dropped from `model` for failing parity (`metrics.parity.<model>.dropped` and
    `metrics.parity.pipeline.dropped`; docs/bundle.md). Anything malformed there reads as none."""
    metrics = manifest.get("metrics")
    parity = metrics.get("parity") if isinstance(metrics, Mapping) else None
    if not isinstance(parity, Mapping):
        return frozenset()
    out: set[str] = set()
    for node in (parity.get(model), parity.get("pipeline")):
        if isinstance(node, Mapping) and isinstance(node.get("dropped"), Mapping):
            out.update(v for v in node["dropped"] if v in VARIANTS)
    return frozenset(out)


def _variant_path(reader: BundleReader, variants: Mapping[str, Any], variant: str) -> str:
    entry = variants[variant]
    return str(reader.path(entry["path"] if isinstance(entry, dict) else entry))


@dataclass
class ModelSet:
    """Sessions for the models (encoder, item head where split, user tower, fusion) plus the tokenizer and the
    shapes they expect."""

    encoder: Session
    user_tower: Session
    fusion: Session
    tokenizer: TextTokenizer
    variants: dict[str, str]
    device: str
    item_dim: int
    text_dim: int
    max_history: int
    variant_reasons: dict[str, str] = field(default_factory=dict)
    """Why each model's variant was loaded ("requested", or the CPU rule of `cpu_features`)."""
    cpu: CpuFeatures | None = None
    """The CPU features the CPU choice was made on (None on the GPU)."""
    item_variant: str = ""
    """The encoder variant that encodes items to be stored ("" = the serving encoder's; module docstring)."""
    item_head: Session | None = None
    """The split encoder's item head in the serving variant (None: the encoder returns `item_vector`)."""
    _item_path: str | None = None
    _item_session: Session | None = None
    _item_head_path: str | None = None
    _item_head_session: Session | None = None
    _item_lock: threading.Lock = field(default_factory=threading.Lock)
    _dims: Mapping[str, Any] | None = None
    _encoder_graphs: CudaGraphRunner | None = None
    _config: SessionConfig | None = None

    @classmethod
    def load(cls, reader: BundleReader, device: str, config: SessionConfig,
             variant: str | dict[str, str] | None = None, item_variant: str | None = None) -> ModelSet:
        models = reader.section("models")
        dims = reader.section("dims")
        tok = reader.section("tokenizer")
        tokenizer = TextTokenizer(reader.path(tok.get("path", "tokenizer.json")), int(tok.get("max_length", 128)),
                                  bool(tok.get("lowercase", False)))
        sessions: dict[str, Session] = {}
        chosen: dict[str, str] = {}
        reasons: dict[str, str] = {}
        cpu = detect_cpu() if device != "cuda" else None
        split = ITEM_HEAD in models
        for name in MODEL_NAMES:
            if name not in models:
                raise BundleError(f"{reader.root}: manifest lacks models.{name}")
            variants = models[name].get("variants", {})
            requested = variant.get(name) if isinstance(variant, dict) else variant
            int8 = variants.get("int8")
            quant = int8.get("quantization") if isinstance(int8, dict) else None
            dropped = dropped_variants(reader.manifest, name)
            v = pick_variant(tuple(variants), device, requested, name, quant, cpu, dropped)
            path = variants[v]["path"] if isinstance(variants[v], dict) else variants[v]
            chosen[name] = v
            if requested is not None and v != requested:
                reasons[name] = f"requested {requested}: dropped at export for failing parity, serving fp32"
            elif requested is not None:
                reasons[name] = "requested"
            elif cpu is not None:
                reasons[name] = choose_cpu_variant([x for x in variants if x in VARIANTS], quant, cpu).reason
            else:
                reasons[name] = "GPU default order: fp16, fp32, int8"
            # CUDA graphs only for the encoder: it dominates GPU time and its shapes are bucketed.
            sessions[name] = make_session(f"{name}.{v}", reader.path(path), device, config,
                                          cuda_graph=(name == "encoder" and config.cuda_graphs))
            raw = sessions[name].session
            check_session_io(name, v, raw.get_inputs(), raw.get_outputs(), dims, split=split)
        enc_variants = models["encoder"].get("variants", {})
        served = "cuda" if sessions["encoder"].provider == "CUDAExecutionProvider" else "cpu"
        item_v = item_encoder_variant(tuple(enc_variants), chosen["encoder"], served, item_variant,
                                      dropped_variants(reader.manifest, "encoder"))
        item_path = _variant_path(reader, enc_variants, item_v)
        head: Session | None = None
        head_item_path: str | None = None
        if split:
            head_variants = models[ITEM_HEAD].get("variants", {}) if isinstance(models[ITEM_HEAD], dict) else {}
            v = head_variant(tuple(head_variants), chosen["encoder"], device)
            head = make_session(f"{ITEM_HEAD}.{v}", _variant_path(reader, head_variants, v), device, config)
            check_session_io(ITEM_HEAD, v, head.session.get_inputs(), head.session.get_outputs(), dims, split=True)
            chosen[ITEM_HEAD] = v
            reasons[ITEM_HEAD] = ("the encoder's variant" if v == chosen["encoder"] else
                                  f"the encoder's variant {chosen['encoder']} is not in the item head, serving {v}")
            head_item_v = head_variant(tuple(head_variants), item_v, device)
            head_item_path = None if head_item_v == v else _variant_path(reader, head_variants, head_item_v)
        out = cls(
            encoder=sessions["encoder"],
            user_tower=sessions["user_tower"],
            fusion=sessions["fusion"],
            tokenizer=tokenizer,
            variants=chosen,
            variant_reasons=reasons,
            cpu=cpu,
            device=served,
            item_dim=int(dims["item"]),
            text_dim=int(dims["text"]),
            max_history=int(dims["max_history"]),
            item_variant=item_v,
            item_head=head,
            _item_path=None if item_v == chosen["encoder"] else item_path,
            _item_head_path=head_item_path,
            _dims=dims,
            _config=config,
        )
        if out.encoder.cuda_graph:  # pragma: no cover - GPU only
            out._encoder_graphs = CudaGraphRunner(out.encoder, out._encoder_output_shapes)
        return out

    @property
    def provider(self) -> str:
        return self.encoder.provider

    @property
    def split(self) -> bool:
        """Whether the encoder is split (an item head turns its `item_states` into `item_vector`)."""
        return self.item_head is not None

    # --- encoder ---
    def item_encoder(self) -> Session:
        """The session that encodes items to be stored: the serving encoder, or the `item_variant` one,
        created on first use (a host that never adds items never pays its memory)."""
        if self._item_path is None:
            return self.encoder
        return self._stored_session("_item_session", "encoder", self._item_path)

    def item_head_session(self, stored: bool) -> Session:
        """The item head for serving, or (`stored`) in the item encoder's variant, created on first use."""
        assert self.item_head is not None
        if not stored or self._item_head_path is None:
            return self.item_head
        return self._stored_session("_item_head_session", ITEM_HEAD, self._item_head_path)

    def _stored_session(self, slot: str, model: str, path: str) -> Session:
        """The session in `slot` for items to be stored, created (and its inputs/outputs checked) on first use,
        once however many threads ask at the same time."""
        with self._item_lock:
            session = getattr(self, slot)
            if session is None:
                assert self._config is not None and self._dims is not None
                session = make_session(f"{model}.items", path, self.device, self._config)
                raw = session.session
                check_session_io(model, self.item_variant, raw.get_inputs(), raw.get_outputs(), self._dims,
                                 split=self.split)
                setattr(self, slot, session)
            return session

    @property
    def _encoder_outputs(self) -> list[str]:
        return ["text_embedding", "item_states" if self.split else "item_vector"]

    def _encoder_output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], Any]]:
        b, t = shapes["input_ids"][0], shapes["input_ids"][1]
        second = ((b, t, self.text_dim) if self.split else (b, self.item_dim), np.float32)
        return {"text_embedding": ((b, self.text_dim), np.float32), self._encoder_outputs[1]: second}

    def encode(self, texts: Sequence[str], batch_size: int = 64, *, stored: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """(text_embedding [n, text], item_vector [n, item]) for `texts`, batched by token length; on the CPU
        at most `sessions.CPU_ENCODE_ROWS` texts per run (larger batches only cost memory there). `stored`:
        the vectors are items to be stored, encoded by `item_encoder()`."""
        if self.device == "cpu":
            batch_size = min(batch_size, CPU_ENCODE_ROWS)
        n = len(texts)
        text_out = np.empty((n, self.text_dim), dtype=np.float32)
        item_out = np.empty((n, self.item_dim), dtype=np.float32)
        if n == 0:
            return text_out, item_out
        order = np.argsort(-self.tokenizer.lengths(texts), kind="stable") if n > batch_size else np.arange(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            # memory taken by the runs goes back once, after the last one (`Session.run`'s `release`)
            t, v = self.encode_batch([texts[i] for i in rows], release=n > 1 and start + batch_size >= n,
                                     stored=stored)
            text_out[rows] = t
            item_out[rows] = v
        return text_out, item_out

    def encode_batch(self, texts: Sequence[str], release: bool | None = None, *, stored: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
        """One encoder run (no re-batching), plus the item head's where the encoder is split: (text_embedding,
        item_vector). `release`: see `Session.run` (None: the CPU memory policy decides by the batch's rows).
        `stored`: see `encode`."""
        if self._encoder_graphs is not None and len(texts) > BATCH_BUCKETS[-1]:  # pragma: no cover - GPU only
            return self.encode(texts, batch_size=BATCH_BUCKETS[-1], stored=stored)
        text, second, mask = self._run_encoder(texts, release, stored)
        if not self.split:
            return text, second
        (item,) = self.item_head_session(stored).run({"item_states": second, "attention_mask": mask},
                                                     ["item_vector"], release=release)
        return text, np.asarray(item, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str], release: bool | None = None,
                       started: Callable[[], None] | None = None) -> np.ndarray:
        """`text_embedding` [n, text] of one encoder run (no re-batching, no item head): what `search` runs
        and the latency benchmark times as the encoder stage. `started` is called once the texts are
        tokenised, just before the run that releases the GIL (`search` starts its lexical half there)."""
        if self._encoder_graphs is not None and len(texts) > BATCH_BUCKETS[-1]:  # pragma: no cover - GPU only
            step = BATCH_BUCKETS[-1]
            if started is not None:
                started()
            return np.concatenate([self.encode_queries(texts[s:s + step]) for s in range(0, len(texts), step)])
        return self._run_encoder(texts, release, False, started)[0]

    def _run_encoder(self, texts: Sequence[str], release: bool | None, stored: bool,
                     started: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(text_embedding, item_vector or item_states, attention_mask) of one encoder run."""
        session = self.item_encoder() if stored else self.encoder
        if session is self.encoder and self._encoder_graphs is not None:  # pragma: no cover - GPU only
            if started is not None:  # tokenising happens inside `_encode_graph` here: start before it (GPU only,
                started()            # never measured: no GPU was lent)
                started = None
            out = self._encode_graph(texts)
            if out is not None:
                return out
            session = self.item_encoder() if stored else self.encoder  # the plain session swapped in
        batch = self.tokenizer.encode(texts)
        if started is not None:
            started()
        text, second = session.run({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask},
                                   self._encoder_outputs, release=release)
        return np.asarray(text, dtype=np.float32), np.asarray(second, dtype=np.float32), batch.attention_mask

    def bucketed_inputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Encoder inputs padded to a (batch, sequence) bucket: extra rows are empty texts, extra columns
        padding (mask 0), so the real rows' outputs are unchanged while the set of shapes stays small."""
        b = len(texts)
        pb = bucket(b, BATCH_BUCKETS)
        longest = int(self.tokenizer.lengths(texts).max())
        width = min(bucket(longest, SEQ_BUCKETS), max(self.tokenizer.max_length, longest))
        batch = self.tokenizer.encode(list(texts) + [""] * (pb - b), pad_to=width)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}

    def _encode_graph(self, texts: Sequence[str]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # pragma: no cover - GPU only
        """GPU: pad to a (batch, sequence) bucket and replay that bucket's CUDA graph."""
        runner = self._encoder_graphs
        assert runner is not None
        b = len(texts)
        if not runner.disabled:
            inputs = self.bucketed_inputs(texts)
            out = runner.run(inputs)
            if out is not None:
                second = out[self._encoder_outputs[1]]
                return out["text_embedding"][:b], second[:b], inputs["attention_mask"][:b]
        # Capture failed: a session created with enable_cuda_graph must not serve plain runs, so swap in
        # a plain CUDA session once and serve from it from now on.
        self.encoder = make_session(self.encoder.name, self.encoder.path, "cuda", self._config, cuda_graph=False)
        self._encoder_graphs = None
        return None

    # --- user tower ---
    def history_tensor(self, histories: Sequence[np.ndarray],
                       item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The user tower's history [B, L, d] and mask [B, L] (`recengine.bundle.format.left_pad`)."""
        return history_inputs(left_pad(histories, self.max_history), item_vectors)

    def user_vectors(self, histories: Sequence[np.ndarray], item_vectors: np.ndarray, scene: np.ndarray,
                     profile: np.ndarray) -> np.ndarray:
        """User vectors [B, item] from histories (item rows, oldest first), scene and profile codes."""
        hist, mask = self.history_tensor(histories, item_vectors)
        (out,) = self.user_tower.run({"history": hist, "history_mask": mask,
                                      "scene": scene.astype(np.int64, copy=False),
                                      "profile": profile.astype(np.int64, copy=False)}, ["user_vector"])
        return np.asarray(out, dtype=np.float32)

    # --- fusion ---
    def fusion_scores(self, user: np.ndarray, items: np.ndarray, item_feats: np.ndarray, pop_bucket: np.ndarray,
                      scene: np.ndarray, profile: np.ndarray) -> np.ndarray:
        """Scores [B, C] for candidates `items` [B, C, d] of users `user` [B, d]."""
        (out,) = self.fusion.run({
            "user": user.astype(np.float32, copy=False),
            "items": items.astype(np.float32, copy=False),
            "item_feats": item_feats.astype(np.float32, copy=False),
            "pop_bucket": pop_bucket.astype(np.int64, copy=False),
            "scene": scene.astype(np.int64, copy=False),
            "profile": profile.astype(np.int64, copy=False),
        }, ["scores"])
        return np.asarray(out, dtype=np.float32)
