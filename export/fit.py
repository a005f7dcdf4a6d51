"""Fit every model on a given split: graph tower, text alignment, user tower + item vectors, fusion head.

`fit(dataset, split, config)` is the training half of `run_export` and the entry point the bench uses to
evaluate recengine in torch fp32 on any split (including the cold-item protocol: fit on the warm part, cold
items get text-only vectors because they have no training interactions).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recengine.bundle.format import left_pad
from recengine.data.schema import Dataset
from recengine.errors import ExportError
from recengine.evaluation import Queries, csr_rows, evaluate_queries, histories, make_queries
from recengine.progress import Progress
from recengine.split import Split

from .align import TextResult, train_text_tower
from .cold_start import ColdGenerator
from .config import ExportConfig
from .eval_sample import EVAL_USERS, sample_queries
from .features import Vocab, encode_profiles, encode_scene, pop_bucket_edges, pop_buckets, profile_vocab, scene_vocab
from .fusion import (
    ITEM_FEATURE_NAMES,
    FusionHead,
    FusionInputs,
    fusion_train_data,
    item_features,
    train_fusion,
)
from .graph import GraphResult, train_lightgcn
from .item_vectors import ItemVectors
from .train_user import UserScorer, make_windows, train_user_tower
from .user_tower import UserTower

MIN_EVAL_USERS = 2
MIN_ITEMS = 10


def resolve_training_device(name: str) -> torch.device:
    """cpu, cuda (refused when torch sees no GPU), or auto (cuda when available)."""
    from recengine.errors import DeviceError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda requested but torch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device(name)


def check_enough_data(split: Split) -> None:
    """Refuse data sets too small to train and validate on, naming the counts."""
    n_eval = len(split.valid)
    n_items = int((split.item_popularity() > 0).sum())
    if n_eval < MIN_EVAL_USERS or n_items < MIN_ITEMS:
        raise ExportError(
            f"too little data to train: {n_eval} users with >= 3 distinct items (need {MIN_EVAL_USERS}) and "
            f"{n_items} items with training interactions (need {MIN_ITEMS})"
        )


@dataclass
class FittedRecengine:
    """Everything trained on one split, plus what is needed to score and export it."""

    config: ExportConfig
    split: Split
    scene_vocab: Vocab
    profile_vocab: Vocab
    profiles: np.ndarray
    scenes: dict[str, np.ndarray]
    """Encoded scene of every event of `split.train`, `split.valid`, `split.test`."""
    popularity: np.ndarray
    pop_edges: np.ndarray
    pop_bucket: np.ndarray
    text: TextResult
    graph: GraphResult
    items: ItemVectors
    tower: UserTower
    fusion: FusionHead
    use_fusion: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cold: ColdGenerator | None = None
    """The cold-item generator (None: cold items keep the text part of their gated vector)."""
    media: np.ndarray | None = None
    """The data set's `item_vectors.npy` (float32 [n_items, d_media], image/audio vectors), or None."""

    # ------------------------------------------------------------------ arrays
    def item_arrays(self) -> dict[str, np.ndarray]:
        """vectors, text_vectors (what the exported encoder's `item_vector` gives each item), graph_vectors,
        gate, item_feats (float32). Items without a graph vector are served their text-only vector (plus, with
        media vectors, the cold generator's media part, which stays in `vectors - text_vectors`)."""
        vectors, graph, gate = self.items.export_arrays()
        served_text = self.text.text_vectors
        if self.cold is not None:
            served_text = self.cold.vectors(self.text.text_embeddings)
            vectors = vectors.copy()
            no_graph = self.items.has_graph.cpu().numpy() <= 0
            vectors[no_graph] = served_text[no_graph]
            if self.media is not None and self.cold.W_media is not None:
                # cold items: the encoder's item_vector + the media part (kept in vectors - text_vectors)
                vectors[no_graph] += self.cold.media_vectors(self.media[no_graph])
        return {"vectors": vectors, "text_vectors": served_text, "graph_vectors": graph, "gate": gate,
                "item_feats": item_features(self.text.text_vectors, graph, gate)}

    def serving_tower(self) -> Any:
        """The text tower as exported: its `item_vector` is what cold and newly added items are served."""
        return self.text.tower if self.cold is None else self.cold.fold_into(self.text.tower)

    def search_tower(self) -> Any:
        """The tower whose `text_embedding` is the bundle's search space: the split form's pre-trained encoder
        (`encoder.split`, `recengine.export.encoder.split`) or the trained tower itself (`text_embedding` is
        read before the projection, so the generator folded into the serving tower changes nothing here)."""
        from .encoder.split import split_tower

        split = split_tower(self.text.tower, eager=False) if self.config.encoder.split else None
        return self.text.tower if split is None else split

    def user_vectors(self, users: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                     scene: np.ndarray | None = None) -> np.ndarray:
        """User-tower vectors of `users` from the histories in CSR (indptr/indices over users).

        `scene` is int64 [len(users), scene_slots]; None = unknown scene (all `<unk>`).
        """
        hist = left_pad(csr_rows(indptr, indices, users), self.config.user.max_history, fixed=True)
        if scene is None:
            scene = np.zeros((len(users), self.scene_vocab.slots), np.int64)
        scorer = UserScorer(self.tower, self.items, self.profiles, torch.device("cpu"))
        return scorer.user_vectors(hist, scene, self.profiles[np.asarray(users, np.int64)])

    # ------------------------------------------------------------------ evaluation
    def queries(self, stage: str, max_users: int = EVAL_USERS) -> Queries:
        """The queries of `stage`: every user's, or a seeded sample of `max_users` of them (`eval_sample`;
        0 = all)."""
        return sample_queries(make_queries(self.split, stage), max_users)

    def score_fn(self, stage: str = "valid", use_fusion: bool | None = None, max_users: int = EVAL_USERS):
        """(score_fn, queries): `score_fn(query_rows) -> [b, n_items]` for `evaluate_full_ranking`, over
        `queries(stage, max_users)`."""
        from .fusion import rerank_scores, top_candidates

        q = self.queries(stage, max_users)
        indptr, indices = histories(self.split, stage)
        scene = self.scenes[stage][q.scene_rows]
        u = self.user_vectors(q.users, indptr, indices, scene)
        v = self.item_arrays()["vectors"]
        fuse = self.use_fusion if use_fusion is None else use_fusion
        if not fuse:
            return (lambda rows: u[rows] @ v.T), q
        arrays = self.item_arrays()
        inputs = FusionInputs(arrays["vectors"], arrays["item_feats"], self.pop_bucket)
        profile = self.profiles[q.users]

        def fn(rows: np.ndarray) -> np.ndarray:
            base = u[rows] @ v.T
            excl = [q.exclude_indices[q.exclude_indptr[i]:q.exclude_indptr[i + 1]] for i in rows]
            cands = top_candidates(u[rows], v, excl, self.config.fusion.n_candidates)
            with torch.no_grad():
                iv, f, p = inputs.gather(torch.from_numpy(cands))
                fused = self.fusion(torch.from_numpy(u[rows]), iv, f, p, torch.from_numpy(scene[rows]),
                                    torch.from_numpy(profile[rows])).numpy()
            return rerank_scores(base, cands, fused)

        return fn, q

    def evaluate(self, stage: str = "valid", use_fusion: bool | None = None,
                 max_users: int = EVAL_USERS) -> dict[str, float]:
        """Full-ranking metrics on `stage` over at most `max_users` users (`eval_sample`; 0 = all)."""
        fn, q = self.score_fn(stage, use_fusion, max_users)
        return evaluate_queries(fn, q).metrics


def fold_text_scale(text: TextResult, items: ItemVectors) -> TextResult:
    """Fold the learned text scale of `items` into a copy of the text tower's projection and the text vectors
    (and reset it to 1 in `items`), so the exported encoder's `item_vector` is what the user tower was trained
    with: items added at serving time get the same vectors as cold catalogue items."""
    import copy
    import dataclasses as dc

    scale = items.text_scale()
    if scale == 1.0:
        return text
    tower = copy.deepcopy(text.tower)
    with torch.no_grad():
        tower.projection.weight.mul_(scale)
        items.text.mul_(scale)
        items.log_text_scale.zero_()
    return dc.replace(text, tower=tower, text_vectors=(text.text_vectors * scale).astype(np.float32))


def fit_cold(fitted: FittedRecengine, seed: int) -> ColdGenerator | None:
    """The cold-item generator of a fitted model (`config.cold`), fitted on its warm items and, with
    `cold.align`, widened so its scores spread like the warm items' for the training users."""
    cfg = fitted.config.cold
    if cfg.generator != "ridge":
        return None
    vectors, _, _ = fitted.items.export_arrays()
    warm = np.flatnonzero(fitted.items.has_graph.cpu().numpy() > 0)
    if warm.size < 2:
        return None
    users = None
    if cfg.align:
        rng = np.random.default_rng(seed)
        indptr, indices = fitted.split.train_csr()
        active = np.flatnonzero(np.diff(indptr) > 0)
        chosen = rng.choice(active, size=min(512, active.size), replace=False)
        users = fitted.user_vectors(np.sort(chosen), indptr, indices)
    return ColdGenerator.fit(fitted.text.text_embeddings, vectors, warm, cfg.ridge, users, media=fitted.media)


def user_windows(split: Split, train_scene: np.ndarray, ucfg: Any, seed: int) -> tuple[Any, Any]:
    """The user tower's first windows and, with `user.reshuffle`, the maker of each later epoch's (a new order
    of every user's train events per epoch, seeded by `seed` and the epoch)."""
    if not ucfg.reshuffle:
        return make_windows(split, train_scene, ucfg.max_history, ucfg.windows_per_user), None

    def rewindow(epoch: int) -> Any:
        return make_windows(split, train_scene, ucfg.max_history, ucfg.windows_per_user,
                            shuffle_seed=seed * 100_003 + epoch)

    return rewindow(0), rewindow


def _timed(timings: dict[str, float], name: str):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - self.t, 3)

    return _T()


def fit(dataset: Dataset, split: Split, config: ExportConfig, progress: Progress | None = None,
        workdir: Path | None = None, finetune: str | None = None, use_graph: bool = True,
        graph: GraphResult | None = None, text_source: Any = None, train_fusion_head: bool = True,
        text: TextResult | None = None) -> FittedRecengine:
    """Train all models on `split` (early stopping on `split.valid`) and return them with their metrics.

    `finetune` overrides `config.encoder.finetune` (the frozen_text ablation); `use_graph=False` trains
    text-only item vectors (the text_only ablation); `graph` reuses an already trained LightGCN and `text`
    an already trained text tower (ablations that only change the later stages).
    """
    progress = progress or Progress(config.quiet)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_training_device(config.device)
    seed = config.seed
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    check_enough_data(split)
    timings: dict[str, float] = {}
    finetune = finetune or config.encoder.finetune

    svocab, pvocab = scene_vocab(dataset), profile_vocab(dataset)
    scenes = {"train": encode_scene(svocab, split.train), "valid": encode_scene(svocab, split.valid),
              "test": encode_scene(svocab, split.test)}
    profiles = encode_profiles(pvocab, dataset)
    pop = split.item_popularity()
    edges = pop_bucket_edges(pop, config.fusion.pop_buckets)
    buckets = pop_buckets(pop, edges)
    # every early-stopping and selection evaluation scores the same seeded sample of validation users
    # (all of them up to EVAL_USERS): a pass costs at most EVAL_USERS x items instead of users x items
    valid_q = sample_queries(make_queries(split, "valid"))
    d = config.item_dim

    if graph is None:
        with _timed(timings, "graph"):
            graph = train_lightgcn(split, d, config.graph, valid_q, seed, device, progress)
    if text is None:
        with _timed(timings, "text_align"):
            text = train_text_tower(list(dataset.items.texts), graph.item_emb, pop, d, config.encoder, finetune,
                                    seed, device, progress, workdir=workdir, source=text_source)
    with _timed(timings, "user_tower"):
        torch.manual_seed(seed)
        from . import item_vectors as iv

        items = ItemVectors(text.text_vectors, graph.item_emb, pop if use_graph else np.zeros_like(pop),
                            media=dataset.items.vectors if iv.WARM_MEDIA else None).to(device)
        ucfg = config.user
        tower = UserTower(d, ucfg.max_history, ucfg.layers, ucfg.heads, ucfg.dropout, svocab.sizes,
                          pvocab.sizes).to(device)
        windows, rewindow = user_windows(split, scenes["train"], ucfg, seed)
        result = train_user_tower(tower, items, split, windows, profiles, valid_q, scenes["valid"], ucfg, seed,
                                  device, progress, item_dropout=ucfg.item_dropout if use_graph else 0.0,
                                  rewindow=rewindow)
        tower, items = tower.cpu().eval(), items.cpu()
        text_scale = items.text_scale()
        text = fold_text_scale(text, items)
    fitted = FittedRecengine(config=config, split=split, scene_vocab=svocab, profile_vocab=pvocab, profiles=profiles,
                             scenes=scenes, popularity=pop, pop_edges=edges, pop_bucket=buckets, text=text,
                             graph=graph, items=items, tower=tower, fusion=None, use_fusion=False,  # type: ignore[arg-type]
                             timings=timings, media=dataset.items.vectors)
    with _timed(timings, "cold_generator"):
        fitted.cold = fit_cold(fitted, seed)
    arrays = fitted.item_arrays()
    fcfg = config.fusion
    torch.manual_seed(seed)
    head = FusionHead(d, len(ITEM_FEATURE_NAMES), len(edges) + 2, svocab.sizes, pvocab.sizes, fcfg.hidden,
                      fcfg.dropout)
    fitted.fusion = head
    valid_scene = scenes["valid"][valid_q.scene_rows]
    vindptr, vindices = histories(split, "valid")
    valid_u = fitted.user_vectors(valid_q.users, vindptr, vindices, valid_scene)
    inputs = FusionInputs(arrays["vectors"], arrays["item_feats"], buckets)
    retrieval = fused = float("nan")
    fusion_epoch = 0
    if train_fusion_head:
        with _timed(timings, "fusion"):
            scorer = UserScorer(tower, items, profiles, torch.device("cpu"))
            data = fusion_train_data(split, scenes["train"], profiles, scorer.user_vectors, arrays["vectors"], fcfg,
                                     ucfg.max_history, seed)
            retrieval, fused, fusion_epoch = train_fusion(head, inputs, data, valid_u, valid_q, valid_scene,
                                               profiles[valid_q.users], fcfg, seed, progress)
        fitted.use_fusion = bool(fused > retrieval)
    fitted.metrics = {
        "graph_val_ndcg@10": graph.best_ndcg,
        "user_tower_val_ndcg@10": result.best_ndcg,
        "user_tower_epochs": result.epochs_run,
        "user_tower_best_epoch": result.best_epoch,
        "fusion_best_epoch": fusion_epoch,
        "align_infonce": text.align_loss,
        **({} if math.isnan(text.anchor_drift) else {"align_anchor_drift": text.anchor_drift}),
        "text_scale": text_scale,
        "cold_spread": fitted.cold.spread if fitted.cold is not None else 0.0,
        "fusion_val_ndcg@10": fused,
        "retrieval_val_ndcg@10": retrieval,
    }
    return fitted


def train_valid_split(split: Split, include_test: bool = False) -> Split:
    """`split` with each user's validation event (and, with `include_test`, test event) appended to their train
    events, in chronological order, and an empty validation part (and test part, with `include_test`): the
    data of the refit that scores the test (or, with every event, a model of all the data)."""
    from recengine.data.schema import Interactions

    parts = [split.train, split.valid] + ([split.test] if include_test else [])

    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    keys = [k for k in split.train.context if all(k in p.context for p in parts)]
    both = Interactions(user=cat("user"), item=cat("item"), timestamp=cat("timestamp"), weight=cat("weight"),  # type: ignore[arg-type]
                        context={k: np.concatenate([p.context[k] for p in parts]) for k in keys})
    # parts are in time order per user (train < valid < test): a stable sort by user keeps it
    merged = both.subset(np.argsort(both.user, kind="stable"))
    empty = split.valid.subset(np.zeros(0, np.int64))
    return Split(train=merged, valid=empty, test=empty if include_test else split.test, n_users=split.n_users,
                 n_items=split.n_items)


def refit(fitted: FittedRecengine, progress: Progress | None = None, include_test: bool = False) -> FittedRecengine:
    """Retrain the user tower, item vectors and (when used) fusion head on train+valid, for the epoch counts the
    first fit early-stopped at; the graph and text towers are reused (they only initialise the item vectors).

    A model of more (and more recent) data without a validation set to stop on. The bench uses it with
    `include_test` in its cold-item protocol, where every baseline is refitted on all warm interactions; on the
    main split it keeps the early-stopped model, like SASRec (a train+valid refit scored lower on test there).
    The returned model's split has an empty validation part; score it on "test" (with `include_test` the test
    events are trained on too).
    """
    config = fitted.config
    progress = progress or Progress(config.quiet)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_training_device(config.device)
    seed = config.seed
    split = train_valid_split(fitted.split, include_test)
    scenes = {"train": encode_scene(fitted.scene_vocab, split.train), "valid": fitted.scenes["valid"][:0],
              "test": fitted.scenes["test"][:0] if include_test else fitted.scenes["test"]}
    pop = split.item_popularity()
    edges = pop_bucket_edges(pop, config.fusion.pop_buckets)
    buckets = pop_buckets(pop, edges)
    d, ucfg = config.item_dim, config.user
    timings: dict[str, float] = {}
    epochs = max(1, int(fitted.metrics.get("user_tower_best_epoch", 0)) or ucfg.epochs)
    with _timed(timings, "refit_user_tower"):
        torch.manual_seed(seed)
        from . import item_vectors as iv

        items = ItemVectors(fitted.text.text_vectors, fitted.graph.item_emb, pop,
                            media=fitted.media if iv.WARM_MEDIA else None).to(device)
        tower = UserTower(d, ucfg.max_history, ucfg.layers, ucfg.heads, ucfg.dropout, fitted.scene_vocab.sizes,
                          fitted.profile_vocab.sizes).to(device)
        windows, rewindow = user_windows(split, scenes["train"], ucfg, seed)
        train_user_tower(tower, items, split, windows, fitted.profiles, None, None, ucfg, seed,  # type: ignore[arg-type]
                         device, progress, fixed_epochs=epochs, rewindow=rewindow)
        tower, items = tower.cpu().eval(), items.cpu()
        text = fold_text_scale(fitted.text, items)
    out = FittedRecengine(config=config, split=split, scene_vocab=fitted.scene_vocab,
                          profile_vocab=fitted.profile_vocab, profiles=fitted.profiles, scenes=scenes, popularity=pop,
                          pop_edges=edges, pop_bucket=buckets, text=text, graph=fitted.graph, items=items,
                          tower=tower, fusion=fitted.fusion, use_fusion=fitted.use_fusion,
                          metrics={**fitted.metrics, "refit_user_tower_epochs": epochs}, timings=timings,
                          media=fitted.media)
    out.cold = fit_cold(out, seed)
    if fitted.use_fusion:
        fcfg = config.fusion
        torch.manual_seed(seed)
        head = FusionHead(d, len(ITEM_FEATURE_NAMES), len(edges) + 2, fitted.scene_vocab.sizes,
                          fitted.profile_vocab.sizes, fcfg.hidden, fcfg.dropout)
        arrays = out.item_arrays()
        with _timed(timings, "refit_fusion"):
            scorer = UserScorer(tower, items, fitted.profiles, torch.device("cpu"))
            data = fusion_train_data(split, scenes["train"], fitted.profiles, scorer.user_vectors, arrays["vectors"],
                                     fcfg, ucfg.max_history, seed)
            train_fusion(head, FusionInputs(arrays["vectors"], arrays["item_feats"], buckets), data, None, None, None,
                         None, fcfg, seed, progress,
                         fixed_epochs=max(1, int(fitted.metrics.get("fusion_best_epoch", 1))))
        out.fusion = head
    return out


def graph_only_metrics(graph: GraphResult, split: Split, stage: str, max_users: int = EVAL_USERS) -> dict[str, float]:
    """LightGCN user.item scores alone (the graph_only ablation), over at most `max_users` users."""
    q = sample_queries(make_queries(split, stage), max_users)
    return evaluate_queries(lambda rows: graph.user_emb[q.users[rows]] @ graph.item_emb.T, q).metrics
