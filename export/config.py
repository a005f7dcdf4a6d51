"""The export configuration: one dataclass tree, two profiles, TOML files and dotted overrides.

Every knob of the export is a field here so that it can be reached from the CLI (`--set user.epochs=50`),
from a config file (`--config export.toml`, sections named like the fields) or from Python, and so that
the resolved configuration can be written into the bundle manifest (it is what produced the bundle).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from recengine.errors import ExportError
from recengine.retrieval import TEXT_INDEX_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI (export extra)
    import tomli as tomllib

PROFILES = ("standard", "quick")


@dataclass
class EncoderConfig:
    """Text tower: which encoder, how it is fine-tuned, and the InfoNCE alignment stage."""

    path: str | None = None
    """Local Hugging Face BERT-family directory; None = the packaged all-MiniLM-L6-v2 (standard) or a
    tiny randomly initialised BERT built on the fly (quick)."""
    tiny: bool = False
    """Use the tiny test encoder instead of `path` (the quick profile)."""
    finetune: str = "lora"
    """lora | full (last `full_layers` layers) | none (frozen encoder, only the projection trains)."""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_layers: int = 2
    """LoRA adapters only in the last N transformer layers (0 = every layer). With adapters in the last
    layers only, the frozen lower layers run without autograd, which cuts the alignment's backward pass
    (MiniLM on 1 shared CPU thread: ~11 s per batch of 64 texts with adapters in all 6 layers)."""
    full_layers: int = 2
    max_length: int = 64
    """Token truncation for item texts (MovieLens item texts are ~20-60 tokens: p99 43 with MiniLM's tokenizer).
    `recengine.export.adapt` lowers it to the catalogue's p99 rounded up to 8 (at least 16)."""
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    """Learning rate of the projection head (and of LoRA adapters)."""
    encoder_lr: float = 5e-5
    """Learning rate of fully fine-tuned encoder layers (finetune=full)."""
    temperature: float = 0.07
    anchor: float = 0.0
    """Weight of the anchor term added to InfoNCE when the encoder itself trains (lora, full): the mean cosine
    distance of each batch text's embedding (`text_embedding`, what `search` serves) from the untouched
    encoder's embedding of the same text. InfoNCE alone moves the search space with the graph (issue 15:
    known-item hit@1 of the dense space 0.95 -> 0.36 on MovieLens); the anchor keeps it where the pre-trained
    model put it while the projection and what LoRA can do within that bound pull the item vectors to the
    graph. The trained tower runs with its dropout and the copy without, so the term also carries dropout's
    noise (the tests' tiny encoder: 0.018 at the first step, 3e-8 without dropout). 0 = off, the default:
    measured on MovieLens (docs/export.md "The encoder"), anchor 1 doubled the
    dense space's known-item hit@1 (0.34 -> 0.72) but cost the user tower 18 % of its validation NDCG@10 and
    the served blend 5 %, while the hybrid search `search` serves was already level with the untouched
    encoder. With `split` (the default) the search space is the untouched encoder's whatever the fine-tuning
    does, so the anchor only matters with `split` off."""
    split: bool = True
    """Export a fine-tuned encoder split in two (`recengine.export.encoder.split`): the pre-trained encoder,
    untouched, serves search (`text_embedding`) and hands its hidden states below the first fine-tuned layer
    to an item head (`models.item_head`) that gives `item_vector`. Search then ranks by the pre-trained
    model's semantics (plot descriptions: 2 of 10 found by the fine-tuned space, 8 by the untouched one)
    at the same cost per query; an added item runs the fine-tuned layers twice, and the bundle carries them
    twice (MiniLM, last 2 layers: +3.6 MB INT8). False: one graph whose `text_embedding` is the fine-tuned
    one (the form before; `anchor` then bounds its drift). No effect with `finetune="none"`."""
    max_align_items: int = 3000
    """Items per alignment epoch, sampled proportionally to sqrt(popularity) (bounds the cost of a
    forward+backward pass of the real encoder on 2 CPU cores)."""
    encode_batch_size: int = 128


@dataclass
class GraphConfig:
    """LightGCN over the train user-item graph, trained with BPR."""

    layers: int = 3
    epochs: int = 30
    lr: float = 2e-2
    batch_size: int = 4096
    reg: float = 1e-4
    patience: int = 5
    eval_every: int = 5


@dataclass
class UserConfig:
    """SASRec-style user tower trained jointly with the gated item vectors (full-softmax CE)."""

    max_history: int = 50
    layers: int = 2
    heads: int = 1
    dropout: float = 0.3
    """Measured on ML-small (tiny text tower, sampled CE): dropout 0.3 with every window of each user reached
    validation NDCG@10 0.044 against 0.039 for dropout 0.2 with the latest two windows."""
    epochs: int = 150
    patience: int = 6
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    item_dropout: float = 0.15
    """DropoutNet: share of items whose vector is replaced by its text-only vector per batch, so text-only
    vectors of cold items stay in the same space."""
    loss: str = "sampled"
    """sampled (softmax over the target + `n_negatives` shared uniform negatives) | full (softmax over every
    item). Measured on ML-small (9.7k items, 1 CPU thread, same seed and data): full reached validation
    NDCG@10 0.0531 / test 0.0428 against 0.0492 / 0.0404 for 2048 sampled negatives, at 2.2x the training time
    (640 s against 287 s); the default samples to keep the export within its time budget, and
    `recengine.export.adapt` switches catalogues of up to 4,096 items (where it costs the same) to full.
    Re-measured 2026-11-30 with the standard export (LoRA MiniLM, fusion, same split and seed; `recengine bench
    quality --models recengine --set user.loss=full`): validation 0.0558 / test 0.0468 against 0.0571 / 0.0441
    sampled, so validation (what the export may select on) no longer confirms the gain at this size."""
    n_negatives: int = 2048
    windows_per_user: int = 8
    """Training sequences per user: the most recent `max_history`+1 items plus earlier non-overlapping
    windows (up to this many in all), so long histories are not wasted."""
    eval_every: int = 1
    reshuffle: bool = False
    """Put each user's train events in a new random order every epoch before cutting the windows. For data
    without timestamps (`recengine.export.adapt` switches it on there): their order is arbitrary (the split
    shuffles it once), so one fixed order would teach the tower positions that mean nothing and show each
    target only one history."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights, per optimizer step (0 = off). Validation and the
    exported model use the averaged weights, which smooths the epoch-to-epoch noise of the ranking metrics."""


@dataclass
class FusionConfig:
    """Fusion head: u.v + MLP residual, listwise softmax over positive + hard negatives."""

    hidden: int = 64
    n_candidates: int = 50
    epochs: int = 10
    patience: int = 2
    lr: float = 1e-3
    batch_size: int = 128
    dropout: float = 0.1
    samples_per_user: int = 4
    """Training queries per user, taken at random positions of the train sequence."""
    pop_buckets: int = 8


@dataclass
class ColdConfig:
    """How items without interactions (cold catalogue items, items added at serving time) get vectors."""

    generator: str = "ridge"
    """ridge: a linear map from the text embedding to the full item vector, fitted on the warm items and
    folded into the exported encoder (`recengine.export.cold_start`); text: the text part of the gated item
    vector alone (s * P e), as before."""
    ridge: float = 0.1
    """Ridge strength relative to the embeddings' mean squared norm."""
    align: bool = True
    """Widen the generated vectors around their mean so their scores spread like the warm items' (the
    regression shrinks them towards the mean: without this the best cold item scores like an average warm
    one). The factor is the ratio of score standard deviations over warm items, measured on the training
    users (ALDI-style distribution alignment)."""


@dataclass
class CooccurConfig:
    """The item co-occurrence signal blended into `recommend` (`recengine.cooccur`, `recengine.export.cooccur`).

    The lists are item-item cosines (BM25-, TF-IDF-weighted or binary, with a shrinkage term) or EASE^R
    weights of the training interactions, the `k` best per item. Kind, shrink or lambda, recency decay and
    weight are chosen on validation (the tower's own validation users, as served): first kind x decay at the
    middle weight, then the weight for the best pair, then the decay again at that weight, then the
    popularity exponents, then the weight halved or doubled while validation rises, then the cut; the best
    point measured wins, and the bundle keeps the lists only when it beats the tower alone. The weight grid
    reaches down to 0.25: on MovieLens the first run's validation chose 0.5, its lowest point then."""

    enabled: bool = True
    k: int = 50
    """Neighbours kept per item (bundle size: items x k x 6 bytes; 50 against 200 changed MovieLens's
    validation NDCG@10 by less than its standard error)."""
    weightings: tuple[str, ...] = ("bm25", "tfidf", "binary", "ease", "ease_text")
    """List kinds tried: cosine lists over the BM25-, TF-IDF-weighted or plain binary item x user matrix, as a
    practitioner tunes ItemKNN (tf-idf won Book-Crossing's tuned ItemKNN, BM25 MovieLens's, binary the Instacart
    sample's), EASE^R weights (the
    strongest baseline on Book-Crossing; only up to `EASE_MAX_ITEMS` items with interactions), and EASE^R
    with the item texts' words as side information (`ease_text`: `recengine.export.cooccur.ease_neighbours`;
    skipped where no word is shared by two items)."""
    ease_lambdas: tuple[float, ...] = (100.0, 400.0)
    """EASE's regularisation values tried (the bench's tuned EASE chose 50-100 on MovieLens and Book-Crossing)."""
    ease_text_alpha: float = 1.0
    """Weight of the item words as pseudo-users in `ease_text` (their Gram term is alpha^2 F F^T): the best of
    0.03-5 for full EASE on Book-Crossing's validation and test (bench/results/2026-11-30-ease-text-cpu-2core)."""
    shrinks: tuple[float, ...] = (10.0, 100.0)
    decays: tuple[float, ...] = (1.0, 0.7, 0.4)
    """Weight of the t-th latest history item is decay^t (1.0: order-blind, for data without timestamps)."""
    weights: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    """Relative weights: the served weight is this times the median spread of the tower's scores
    (best minus 100th best) over the validation users, so the grid means the same for every model scale."""
    max_history: int = 200
    """Latest history items the signal reads at serving time."""
    pop_exponents: tuple[float, ...] = (0.1, 0.2, 0.3)
    """Popularity exponents beta tried on the chosen lists: each neighbour's similarity times (its number of
    users)^-beta (`recengine.export.cooccur.popularity_scaled`; a popular item is listed by many items and
    would otherwise take the top of most users' lists), kept when validation NDCG@10 rises. Empty: not tried."""
    cuts: tuple[int, ...] = (20,)
    """Shorter lists tried at the chosen point (kept when validation does not drop: a smaller bundle)."""
    refit: bool = True
    """Rebuild the chosen lists from the training and validation events once every setting is chosen (as the
    bench refits its EASE and ItemKNN baselines before testing them; `recengine.export.cooccur.refit_cooccur`).
    The export's validation metrics are measured before, on the lists the choice saw; its test metric after."""
    text_standin: bool = True
    """Give items without a list (new, or nobody interacted with them) a stand-in signal from the cosine of
    their item vector (which their text gives them) to the history's (`text_map`, aligned on warm items), so
    the blend does not push them out."""
    standin_strengths: tuple[float, ...] = (1.0, 2.0, 4.0)
    """Factors on the stand-in's aligned similarities tried on validation: the largest that costs at most
    `STANDIN_TOLERANCE` of validation NDCG@10 is kept (`recengine.export.cooccur.choose_standin`)."""


@dataclass
class IndexConfig:
    """hnswlib parameters (recorded in the manifest)."""

    M: int = 16
    ef_construction: int = 200
    ef_search: int = 128
    """The smallest ef_search stored; `min_recall` may raise it per index."""
    min_recall: float | None = 0.95
    """Each index's stored ef_search is the smallest (`ef_search`, then up `recengine.index_io.EF_LADDER`)
    whose recall@10 against exact search reaches this for 256 probe queries like the served ones: stored
    user vectors for the item index, the encoded first 1-8 words of sampled titles for the text index
    (`recengine.index_io.query_like`, `recengine.index_io.calibrate_ef`); None: `ef_search` as
    given."""
    text: str = "auto"
    """Whether the text space gets an HNSW index: "auto" where a `search` would use it (a catalogue past the
    scan budget, `recengine.retrieval.text_index_wanted`; below it the index is never read and was the CPU
    bundle's largest file), "hnsw" always, "scan" never (search scans every item exactly)."""


@dataclass
class ParityConfig:
    """Tolerances checked after the ONNX export (optimum-style validation config). fp32 failing aborts the
    export (ParityError); a reduced-precision variant failing is dropped (`drop_failed_variants`). int8/fp16
    outputs are compared with fp32 by per-row cosine (per-tensor int8 drops MiniLM to ~0.9 mean cosine,
    per-channel keeps ~0.99); whole pipelines by validation NDCG@10."""

    fp32_atol: float = 1e-4
    """fp32 ONNX vs torch: max absolute difference of every output; of a per-token output ([B, T, ...]: the
    split encoder's `item_states`, hidden states running to tens) divided by its largest magnitude above 1."""
    int8_mean_cos: float = 0.98
    int8_min_cos: float = 0.90
    fp16_mean_cos: float = 0.999
    fp16_min_cos: float = 0.99
    int8_min_ndcg_ratio: float = 0.90
    """INT8 pipeline validation NDCG@10 must reach this share of fp32 (the target is 0.98; below this
    floor the INT8 path is broken, not merely lossy)."""
    fp16_min_ndcg_ratio: float = 0.95
    reencoded_min_ndcg_ratio: float = 0.75
    """The floor of the re-encoded check (every catalogue text through the variant's encoder). Since the
    cold-item generator maps a text to a whole item vector (not only its text part), re-encoding a *warm*
    item perturbs its collaborative part too, which serving never does (warm items keep their stored
    vectors): measured on MovieLens, INT8 re-encoded 0.865x and 0.907x fp32 in two evaluations of the
    standard export, where the as-served INT8 pipeline was 1.01x. A broken INT8 encoder (random vectors)
    lands near the popularity level, far below this floor."""
    sample_items: int = 256
    """Catalogue texts used for the encoder's tensor-level parity checks."""
    reencode_variants: tuple[str, ...] = ("int8",)
    """Variants whose pipeline is also evaluated with the whole catalogue re-encoded by their encoder
    (`metrics.validation_reencoded`). fp16 is left out by default: its encoder cosine vs fp32 is ~0.999999
    and re-encoding 10k texts with fp16 weights on a CPU costs minutes."""
    raise_on_failure: bool = True
    """False: parity checks report instead of raising, and every variant is kept (diagnostics only)."""
    drop_failed_variants: bool = True
    """A reduced-precision variant (int8, fp16) that fails its check is dropped instead of stopping the export:
    per model when its output cosine vs fp32 is too low, from every model when its pipeline's validation
    NDCG@10 is; that model then serves fp32 (`--target cpu|gpu` keep fp32 for it) and the failure is recorded
    in `metrics.parity` (`<model>.dropped`, `pipeline.dropped`). Why: some texts quantise badly (measured:
    id-only product texts, INT8 encoder mean cosine 0.68), and a lossy variant is no reason to ship nothing.
    fp32 vs torch failures always stop the export: they mean a wrong graph, not a lossy one."""

    def cosine_thresholds(self, variant: str) -> tuple[float, float]:
        """(mean, min) cosine a quantised variant's outputs must keep against fp32."""
        if variant == "int8":
            return self.int8_mean_cos, self.int8_min_cos
        if variant == "fp16":
            return self.fp16_mean_cos, self.fp16_min_cos
        raise ExportError(f"no cosine thresholds for variant {variant!r}")


TARGET_VARIANTS: dict[str, tuple[str, ...] | None] = {"cpu": ("int8",), "gpu": ("fp16",), "all": None}
"""`ExportConfig.target` -> the model variants the committed bundle holds (None: every one in `variants`)."""


@dataclass
class ExportConfig:
    """Everything that determines an export. Build with `from_profile`, `from_toml`, `override`."""

    profile: str = "standard"
    seed: int = 0
    device: str = "cpu"
    """cpu | cuda | auto (training device; ONNX models are always exported for CPU and GPU)."""
    item_dim: int = 64
    threads: int = 0
    """torch intra-op threads (0 = torch's default, one per core; the quick profile uses 1). Use 1 on a machine
    shared with other work (there, on 2 cores, LightGCN epochs took 40 s with 2 threads against 5 s with 1:
    threads spin-wait on each other) and for bit-for-bit reproducibility (with several threads, reruns under
    the same seed agree to ~1e-5)."""
    quiet: bool = False
    adapt: bool = True
    """Let the data decide what it should (`recengine.export.adapt`: token length, history length, loss, epoch
    caps, graph batch size, ablations), never touching a key set explicitly; false = the profile as is."""
    explicit: tuple[str, ...] = ()
    """Dotted keys set by `override` (the CLI's options and `--set`, a TOML file, Python), as opposed to the
    profile's values: `adapt` never changes them. Recorded, never set by hand."""
    ablations: tuple[str, ...] = ("frozen_text", "graph_only", "no_fusion")
    """`text_only` (no graph part: one more user-tower training) is opt-in."""
    variants: tuple[str, ...] = ("fp32", "int8", "fp16")
    target: str = "all"
    """Host the bundle is for: `cpu` keeps only the int8 models, `gpu` only fp16, `all` every variant in
    `variants`. The export still builds and measures fp32 (parity and validation compare against it) and
    drops what the target does not need just before the commit (see `TARGET_VARIANTS`)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    user: UserConfig = field(default_factory=UserConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    cold: ColdConfig = field(default_factory=ColdConfig)
    cooccur: CooccurConfig = field(default_factory=CooccurConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    parity: ParityConfig = field(default_factory=ParityConfig)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_profile(cls, profile: str = "standard") -> ExportConfig:
        """`standard` (real MiniLM, tuned epochs) or `quick` (tiny encoder, few epochs: tests, < 60 s)."""
        if profile not in PROFILES:
            raise ExportError(f"unknown profile {profile!r} (choose one of {', '.join(PROFILES)})")
        cfg = cls(profile=profile)
        if profile == "quick":
            # one thread: tiny models gain nothing from more, and results are then bit-for-bit reproducible
            # (multi-threaded sparse/scatter kernels sum in a varying order: ~1e-5 run-to-run differences)
            cfg.threads = 1
            cfg.item_dim = 32
            # LoRA in the last of the tiny encoder's 2 layers: like the standard profile, the lower layers stay
            # shared and the bundle is split (search encoder + item head, `encoder.split`)
            cfg.encoder = EncoderConfig(tiny=True, max_length=32, epochs=2, batch_size=64, lr=3e-3,
                                        max_align_items=2000, lora_layers=1)
            cfg.graph = GraphConfig(layers=2, epochs=10, lr=1e-2, eval_every=5)
            cfg.user = UserConfig(max_history=20, layers=1, heads=1, epochs=8, patience=3, lr=3e-3, batch_size=64,
                                  windows_per_user=2)
            cfg.fusion = FusionConfig(hidden=32, n_candidates=20, epochs=3, patience=1, samples_per_user=2)
            cfg.index = IndexConfig(M=8, ef_construction=50, ef_search=50)
            # a random tiny encoder on 80 users: rankings are near-random, so NDCG ratios mean little
            cfg.parity = ParityConfig(int8_mean_cos=0.9, int8_min_cos=0.5, int8_min_ndcg_ratio=0.0,
                                      fp16_min_ndcg_ratio=0.0, sample_items=64)
            cfg.ablations = ("frozen_text", "graph_only")
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path, profile: str | None = None) -> ExportConfig:
        """Read a TOML file: top-level keys and `[encoder]`, `[graph]`, `[user]`, ... sections.

        The file may name a `profile`; `profile` passed here wins. Unknown keys are an error (a typo must
        not silently fall back to a default).
        """
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ExportError(f"{p}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ExportError(f"{p}: invalid TOML ({exc})") from None
        prof = profile or raw.pop("profile", "standard")
        raw.pop("profile", None)
        cfg = cls.from_profile(prof)
        return cfg.override(_flatten(raw), source=str(p))

    # ------------------------------------------------------------------ overrides
    def override(self, values: dict[str, Any], source: str = "override", explicit: bool = True) -> ExportConfig:
        """Return a copy with dotted keys (`"user.epochs"`, `"seed"`) set; values are type-checked.

        With `explicit` (every caller but `recengine.export.adapt`) the keys are added to `explicit`, so the
        data-driven defaults never replace what a user chose."""
        cfg = dataclasses.replace(self)
        for sub in ("encoder", "graph", "user", "fusion", "cold", "index", "parity"):
            setattr(cfg, sub, dataclasses.replace(getattr(self, sub)))
        for key, value in values.items():
            if key == "explicit":
                raise ExportError(f"{source}: config key 'explicit' is recorded by the export, not set")
            parts = key.split(".")
            target: Any = cfg
            for part in parts[:-1]:
                if not is_dataclass(target) or part not in {f.name for f in fields(target)}:
                    raise ExportError(f"{source}: unknown config section {key!r}")
                target = getattr(target, part)
            name = parts[-1]
            spec = {f.name: f for f in fields(target)} if is_dataclass(target) else {}
            if name not in spec or is_dataclass(getattr(target, name)):
                raise ExportError(f"{source}: unknown config key {key!r}")
            setattr(target, name, _coerce(key, getattr(target, name), spec[name].type, value, source))
        if explicit:
            cfg.explicit = tuple(dict.fromkeys((*self.explicit, *values)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Refuse values that cannot work, naming the key."""
        checks = [
            (self.profile in PROFILES, "profile", f"one of {PROFILES}"),
            (self.device in ("cpu", "cuda", "auto"), "device", "cpu, cuda or auto"),
            (self.encoder.finetune in ("lora", "full", "none"), "encoder.finetune", "lora, full or none"),
            (self.user.loss in ("full", "sampled"), "user.loss", "full or sampled"),
            (self.item_dim >= 4, "item_dim", ">= 4"),
            (self.user.max_history >= 2, "user.max_history", ">= 2"),
            (self.user.heads >= 1 and self.item_dim % self.user.heads == 0, "user.heads", "a divisor of item_dim"),
            (0.0 <= self.user.item_dropout < 1.0, "user.item_dropout", "in [0, 1)"),
            (0.0 <= self.user.dropout < 1.0, "user.dropout", "in [0, 1)"),
            (0.0 <= self.user.ema < 1.0, "user.ema", "in [0, 1)"),
            (self.fusion.n_candidates >= 2, "fusion.n_candidates", ">= 2"),
            (self.cold.generator in ("ridge", "text"), "cold.generator", "ridge or text"),
            (self.cold.ridge > 0, "cold.ridge", "> 0"),
            (self.cooccur.k >= 1, "cooccur.k", ">= 1"),
            (bool(self.cooccur.weightings) and all(w in ("bm25", "tfidf", "binary", "ease", "ease_text")
                                                   for w in self.cooccur.weightings),
             "cooccur.weightings", "a non-empty subset of bm25, tfidf, binary, ease, ease_text"),
            (math.isfinite(self.cooccur.ease_text_alpha) and self.cooccur.ease_text_alpha > 0,
             "cooccur.ease_text_alpha", "a finite number > 0"),
            (all(x > 0 for x in self.cooccur.ease_lambdas), "cooccur.ease_lambdas", "numbers > 0"),
            (all(c >= 1 for c in self.cooccur.cuts), "cooccur.cuts", "numbers >= 1"),
            (all(math.isfinite(x) and 0 < x <= 1 for x in self.cooccur.pop_exponents), "cooccur.pop_exponents",
             "numbers in (0, 1]"),
            (1 <= self.cooccur.max_history <= 100_000, "cooccur.max_history", "in [1, 100000]"),
            (bool(self.cooccur.standin_strengths) and all(math.isfinite(x) and x > 0
                                                          for x in self.cooccur.standin_strengths),
             "cooccur.standin_strengths", "a non-empty list of finite numbers > 0"),
            (bool(self.cooccur.shrinks) and all(x >= 0 for x in self.cooccur.shrinks), "cooccur.shrinks",
             "a non-empty list of numbers >= 0"),
            (bool(self.cooccur.decays) and all(0 < x <= 1 for x in self.cooccur.decays), "cooccur.decays",
             "a non-empty list of numbers in (0, 1]"),
            (bool(self.cooccur.weights) and all(x > 0 for x in self.cooccur.weights), "cooccur.weights",
             "a non-empty list of numbers > 0"),
            (self.encoder.temperature > 0, "encoder.temperature", "> 0"),
            (self.encoder.anchor >= 0, "encoder.anchor", ">= 0"),
            (self.index.min_recall is None or 0 < self.index.min_recall <= 1, "index.min_recall",
             "in (0, 1] (or none)"),
            (self.index.text in TEXT_INDEX_MODES, "index.text", ", ".join(TEXT_INDEX_MODES)),
            (all(v in ("fp32", "int8", "fp16") for v in self.variants) and "fp32" in self.variants,
             "variants", "a subset of fp32, int8, fp16 that includes fp32"),
            (self.target in TARGET_VARIANTS, "target", "cpu, gpu or all"),
            (self.target not in TARGET_VARIANTS or set(TARGET_VARIANTS[self.target] or ()) <= set(self.variants),
             "variants", f"a superset of what target {self.target!r} keeps "
                         f"({', '.join(TARGET_VARIANTS.get(self.target) or ())})"),
            (all(v in ("int8", "fp16") for v in self.parity.reencode_variants), "parity.reencode_variants",
             "a subset of int8, fp16"),
            (all(a in ("frozen_text", "graph_only", "text_only", "no_fusion") for a in self.ablations),
             "ablations", "a subset of frozen_text, graph_only, text_only, no_fusion"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ExportError(f"config: {key} must be {expected}")
        for sub in (self.graph, self.user, self.fusion, self.encoder):
            for f in fields(sub):
                value = getattr(sub, f.name)
                if f.name in ("epochs", "batch_size", "layers", "patience") and isinstance(value, int) and value < (
                        0 if f.name in ("epochs", "layers") else 1):
                    raise ExportError(f"config: {type(sub).__name__}.{f.name} must be positive (got {value})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the manifest)."""
        return asdict(self)


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _coerce(key: str, current: Any, annotation: Any, value: Any, source: str) -> Any:
    """Convert CLI strings / TOML values to the field's type, or raise ExportError naming the key."""
    ann = str(annotation)
    try:
        if ann.startswith("tuple"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if "float" in ann:
                return tuple(float(v) for v in value)
            if "int" in ann:
                return tuple(int(v) for v in value)
            return tuple(str(v) for v in value)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and "None" in ann):
            if "None" in ann:
                return None
            raise ValueError("None not allowed")
        if "bool" in ann:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if ann.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if ann.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ExportError(f"{source}: bad value {value!r} for config key {key!r} (expected {ann})") from None
