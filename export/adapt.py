"""Defaults that travel: the export sets what the data should decide from the data's own shape.

A profile's numbers were tuned on the embedded MovieLens (610 users, 9,742 items, ~100k interactions, item
texts of ~20 tokens). On another data set some of them are wasteful (50-item history windows for users with
6 events, a sampled softmax over a 2,000-item catalogue) and some make the export's cost grow faster than the
data (LightGCN propagates the whole graph once per batch, so an epoch of fixed-size batches costs
interactions squared). `adapt(config, stats, explicit)` applies small rules, one function each, whose
docstring says why; every change is a `Decision` recorded in the manifest (`adapt.decisions`) and printed
in the export's progress output. A key the user set (CLI option, `--set`, TOML file, `ExportConfig.override`:
`ExportConfig.explicit`) is never changed; the rule's value is recorded under `adapt.kept` instead.

Rules only ever *lower* a profile's value (shorter truncation, shorter windows, fewer epochs) or switch to a
variant measured at least as good at no more cost (the full softmax on small catalogues); none raises a cost
but `rule_order`, whose new windows per epoch cost a loop over the users (measured: 1.5 s per epoch at 100k
users and 1.5M train events, against 1.1 s for the one fixed set).
`config.adapt = false` turns them all off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recengine.data.schema import Dataset
from recengine.progress import Progress
from recengine.split import Split

from .config import ExportConfig

TOKEN_SAMPLE = 20_000
"""Item texts tokenised for the length quantiles (a seeded sample; the fast tokenizer does ~10k texts/s on one
core, so the statistics cost about a second on any catalogue)."""
TOKEN_QUANTILE = 99.0
MIN_MAX_LENGTH = 16
MAX_LENGTH_SHARE = 0.5
"""`rule_max_length` lowers the token cap only to at most this share of the profile's (see its docstring)."""
HISTORY_QUANTILE = 90.0
MIN_HISTORY = 8
FULL_SOFTMAX_MAX_ITEMS = 4096
"""Catalogues up to this size train the user tower with a full softmax (`user.loss = "full"`).

Why: on ML-latest-small (9,742 items) the full softmax reached validation NDCG@10 0.0531 / test 0.0428 against
0.0492 / 0.0404 with 2,048 sampled negatives, at 2.2x the user-tower time. The loss costs positions x classes,
so the full softmax's extra cost vanishes as the catalogue nears `n_negatives`. Measured (CPU time of one
user-tower epoch, one thread, same run, synthetic data of 100,000 interactions, standard user tower): full /
sampled = 0.95x at 2,000 items, 1.00x at 4,000, 2.20x at 10,000. The threshold stays below MovieLens's 9,742
items so the standard MovieLens export keeps its measured time (590 s of a 900 s budget; its ablation trains
a second user tower, so a 2.2x tower would add ~5 minutes); raise it if a re-measurement shows the full
softmax's gain worth that time. Re-measured on MovieLens with the current standard export (LoRA MiniLM, same
split and seed): validation NDCG@10 0.0558 full vs 0.0571 sampled, test 0.0468 vs 0.0441; validation, which
is what the export may select on, does not confirm a gain at that size."""
REFERENCE_INTERACTIONS = 100_000
"""Train interactions of the data set the profiles' epoch counts were tuned on (ML-latest-small: 99,616)."""
USER_EPOCH_FLOOR = 40
"""The user tower's epoch cap never goes below this: the standard MovieLens export early-stopped at epoch 41
(best epoch 35) of its 150."""
GRAPH_MAX_STEPS = 32
"""LightGCN optimizer steps per epoch (each step propagates over the whole graph). MovieLens's 99,616 train
interactions in batches of 4,096 make 25 steps, the setting its epochs were tuned with. Measured (CPU time, one
thread, same run, synthetic data): a step costs 0.027 s at 31,542 train interactions and 0.14 s at 136,617
(proportional), so a fixed-batch epoch went from 0.23 s to 4.8 s (20.8x for 4.3x the data: quadratic)."""
ABLATION_MAX_INTERACTIONS = 250_000
"""Above this many train interactions the retraining ablations (`frozen_text`, `text_only`: each a second
user-tower training, plus a catalogue encoding for `frozen_text`) are skipped. They are manifest-only
diagnostics; on MovieLens (99,616) they took 113-128 s of a 537-590 s export, and they cost what the user tower
costs. Lowered from 500,000: a Book-Crossing 5-core of 436,573 train interactions and 19,658 books trained its
user tower at 40-50 s per epoch (MovieLens: 3.5 s), so its `frozen_text` ablation alone would have added
tens of minutes to an export already past half an hour (bench/results/2026-11-30-cooccur-refit-cpu-2core)."""
MAX_EVAL_SHARE = 0.25
"""Early-stopping evaluations may cost at most this share of the training between two of them."""
USER_EVAL_COST = 2.5e-4
"""One validation pass of the user tower costs USER_EVAL_COST x eval users x items / train interactions epochs.
Measured (CPU time, one thread, same run; synthetic data of 20,000 items, 136,617 train interactions, 9,979
validation users; standard user tower, 2,048 sampled negatives): an epoch 15.4 s, a validation pass 5.6 s.
Full-ranking validation scores every item for every validation user, so its cost grows as users x items while
an epoch grows as interactions: negligible on MovieLens (1.4 % of an epoch), larger than the epoch itself on a
data set of 50,000 users and 200,000 items."""
GRAPH_EVAL_COST = 0.025
"""The same for LightGCN, per optimizer step: a validation pass costs GRAPH_EVAL_COST x eval users x items /
(steps per epoch x train interactions) epochs. Measured in the same run: a full-graph step 0.14 s (136,617
train interactions; 0.027 s at 31,542: proportional), a validation pass 5.0 s."""
CHEAP_ABLATIONS = ("graph_only", "no_fusion")
"""Ablations that only evaluate models already trained (kept at every size)."""


def _round_up(x: float, step: int) -> int:
    return int(step * math.ceil(x / step))


# ---------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class DataStats:
    """The shape of a data set and its split, as the rules read it (all JSON-ready)."""

    n_users: int
    n_items: int
    n_interactions: int
    n_train: int
    """Train interactions of the leave-last-out split (repeat pairs dropped)."""
    n_eval_users: int
    """Users with a validation event (the queries of every early-stopping evaluation)."""
    n_items_with_train: int
    density: float
    """n_interactions / (n_users x n_items)."""
    history: dict[str, float]
    """Quantiles (p10, p50, p90, p99, max) of train events per user, over users with at least one."""
    text_share: float
    """Share of items whose text is not blank."""
    tokens: dict[str, float] | None
    """Quantiles (p50, p90, p99, max) of item-text lengths in the encoder's tokens ([CLS] and [SEP]
    included), over a seeded sample of `token_sample` texts; None when no tokenizer was given."""
    token_sample: int
    has_timestamps: bool
    has_context: bool
    has_profiles: bool
    has_media: bool

    @classmethod
    def of(cls, dataset: Dataset, split: Split, tokenizer: Any = None, sample: int = TOKEN_SAMPLE,
           seed: int = 0) -> DataStats:
        """Count `dataset` and `split`; with a `tokenizers.Tokenizer`, also the item texts' token lengths."""
        n_users, n_items = int(split.n_users), int(split.n_items)
        per_user = np.bincount(split.train.user, minlength=n_users)
        active = per_user[per_user > 0]
        history = ({f"p{q:g}": float(np.percentile(active, q)) for q in (10, 50, 90, 99)} | {"max": float(active.max())}
                   if active.size else {"p10": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0})
        texts = list(dataset.items.texts)
        tokens, n_sample = None, 0
        if tokenizer is not None and texts:
            rows = np.arange(len(texts))
            if len(texts) > sample:
                rows = np.sort(np.random.default_rng(seed).choice(len(texts), size=sample, replace=False))
            lengths = np.array([len(e.ids) for e in tokenizer.encode_batch([texts[i] for i in rows])], np.float64)
            tokens = {f"p{q:g}": float(np.percentile(lengths, q)) for q in (50, 90, 99)} | {"max": float(lengths.max())}
            n_sample = int(len(rows))
        n_inter = len(dataset.interactions)
        return cls(
            n_users=n_users, n_items=n_items, n_interactions=int(n_inter), n_train=int(len(split.train)),
            n_eval_users=int(len(split.valid)), n_items_with_train=int((split.item_popularity() > 0).sum()),
            density=float(n_inter / max(1, n_users * n_items)), history=history,
            text_share=float(np.mean([bool(t.strip()) for t in texts])) if texts else 0.0,
            tokens=tokens, token_sample=n_sample,
            has_timestamps=dataset.interactions.timestamp is not None,
            has_context=bool(dataset.interactions.context), has_profiles=bool(dataset.user_attrs),
            has_media=dataset.items.vectors is not None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Proposal:
    """One value a rule wants, why, and the key it was derived from (skipped if that one was not applied)."""

    key: str
    value: Any
    reason: str
    follows: str | None = None


Rule = Callable[[ExportConfig, DataStats], list[Proposal]]


def rule_max_length(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`encoder.max_length` = the 99th percentile of the catalogue's token lengths rounded up to a multiple of 8,
    within [16, the profile's value].

    Why: texts are padded per batch to the batch's longest, and the alignment's batches are random, so their
    length is set by the tail of the distribution: a cap at p99 truncates 1 % of the texts and bounds every
    batch. On MovieLens (p99 43 tokens) the cap of 48 instead of 64 truncates 0.5 % of the texts and shortens
    the mean alignment batch from 43.8 to 42.0 tokens (4 %); on catalogues of short titles with a few long
    texts it saves more. It also bounds what serving encodes per added item and search query. Never raised
    above the profile (longer texts cost attention and time; the profile's value is the budget).

    Applied only where the cap is at most half the profile's (`MAX_LENGTH_SHARE`): catalogues of short
    titles with a long tail, where it bounds real padding. Measured on MovieLens (standard export, same seed,
    one run each): with the cap at 48 instead of 64 the LoRA alignment ended at InfoNCE 2.8946 instead of
    2.8389, and the user tower early-stopped at epoch 16 with validation NDCG@10 0.0479 against epoch 35 and
    0.0571, for a 4 % shorter alignment batch: a different trajectory for almost no saving, so MovieLens
    keeps 64."""
    if stats.tokens is None:
        return []
    q = f"p{TOKEN_QUANTILE:g}"
    want = min(cfg.encoder.max_length, max(MIN_MAX_LENGTH, _round_up(stats.tokens[q], 8)))
    if want > cfg.encoder.max_length * MAX_LENGTH_SHARE:
        return []
    return [Proposal("encoder.max_length", want,
                     f"{q} of the item texts is {stats.tokens[q]:.0f} tokens (max {stats.tokens['max']:.0f})")]


def rule_history(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`user.max_history` = the 90th percentile of the users' train history lengths rounded up to a multiple
    of 8, within [8, the profile's value]; `user.windows_per_user` scaled up by the same factor.

    Why: training windows are `max_history` long whatever the user's history, so on data whose users have a
    handful of events most of every window is padding that the transformer still computes. Shorter windows
    cut that waste (and the serving model's input); more windows per user keep the long histories covered
    (windows x length stays what the profile had), so no training event is dropped. Measured on synthetic data
    whose users have <= 7 train events at p90 (16,700 users, 5,000 items, 100k interactions; quick profile,
    20 epochs, patience 3, one fit each on a loaded 2-core machine): length 50 x 8 windows reached validation
    NDCG@10 0.2327 / test 0.2382 in 182 s of user-tower time (6 epochs); length 8 x 50 windows 0.2327 / 0.2375
    in 122 s (9 epochs); one epoch's CPU time at length 50 vs 16: 14.5 s vs 4.8 s."""
    p90 = stats.history[f"p{HISTORY_QUANTILE:g}"]
    want = min(cfg.user.max_history, max(MIN_HISTORY, _round_up(p90, 8)))
    if want >= cfg.user.max_history:
        return []
    windows = int(math.ceil(cfg.user.windows_per_user * cfg.user.max_history / want))
    why = f"90 % of the users have <= {p90:.0f} train events"
    return [Proposal("user.max_history", want, why),
            Proposal("user.windows_per_user", windows,
                     f"keeps windows x length at the profile's {cfg.user.windows_per_user} x {cfg.user.max_history}",
                     follows="user.max_history")]


def rule_loss(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`user.loss = "full"` on catalogues of at most `FULL_SOFTMAX_MAX_ITEMS` items, and `user.n_negatives`
    at most `n_items - 1` (more shared negatives than other items is a full softmax with duplicates).

    Why: see `FULL_SOFTMAX_MAX_ITEMS` (measured better on MovieLens; about the sampled loss's cost on small
    catalogues)."""
    out: list[Proposal] = []
    if stats.n_items <= FULL_SOFTMAX_MAX_ITEMS and cfg.user.loss != "full":
        out.append(Proposal("user.loss", "full", f"{stats.n_items} items <= {FULL_SOFTMAX_MAX_ITEMS}: a full "
                                                 f"softmax costs about what {cfg.user.n_negatives} negatives do"))
    if cfg.user.n_negatives > stats.n_items - 1:
        out.append(Proposal("user.n_negatives", max(1, stats.n_items - 1), f"only {stats.n_items} items"))
    return out


def rule_order(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`user.reshuffle = True` on data without timestamps.

    Why: without a timestamp column the split puts each user's events in a seeded random order (what is held
    out is a random event, `recengine.split`); a tower trained on that one fixed order learns positions that
    mean nothing and sees each target after one history only. A new order per epoch turns the sequence model
    into a set model and multiplies the (history, target) pairs it learns from."""
    if stats.has_timestamps or cfg.user.reshuffle:
        return []
    return [Proposal("user.reshuffle", True, "no timestamps: the order of each user's events is arbitrary")]


def rule_decay(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`cooccur.decays = (1.0,)` on data without timestamps.

    Why: a recency decay weighs a user's t-th latest event by decay^t, and without timestamps that order is
    the split's random one; on Book-Crossing every decay below 1 scored 0.04-0.06 validation NDCG@10 against
    0.08-0.09 order-blind (the export's own grid, `metrics.cooccur.grid`), so two thirds of the first grid
    stage were spent on points that cannot win, and a noisy validation could still pick one."""
    if stats.has_timestamps or tuple(cfg.cooccur.decays) == (1.0,):
        return []
    return [Proposal("cooccur.decays", (1.0,), "no timestamps: a recency decay would weigh an arbitrary order")]


def rule_graph_batch(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`graph.batch_size` = train interactions / `GRAPH_MAX_STEPS` when that is larger than the profile's.

    Why: every LightGCN step propagates embeddings over the whole graph (cost ~ interactions), so an epoch of
    fixed-size batches costs interactions x interactions / batch: quadratic. With at most `GRAPH_MAX_STEPS`
    steps per epoch an epoch costs ~ interactions and each epoch takes as many steps as on MovieLens, where
    `graph.epochs` and `graph.lr` were tuned (Adam's step size does not grow with the batch)."""
    want = int(math.ceil(stats.n_train / GRAPH_MAX_STEPS))
    if want <= cfg.graph.batch_size:
        return []
    return [Proposal("graph.batch_size", want, f"{stats.n_train} train interactions in <= {GRAPH_MAX_STEPS} "
                                               "full-graph steps per epoch")]


def rule_user_epochs(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`user.epochs` capped at profile x `REFERENCE_INTERACTIONS` / train interactions, never below
    `USER_EPOCH_FLOOR` nor above the profile; early stopping still ends it sooner.

    Why: an epoch costs ~ interactions (windows, positions), so 150 epochs of a 10M-interaction data set are
    100x MovieLens's budget per epoch. A larger data set takes proportionally more optimizer steps per epoch,
    so it needs no more epochs than MovieLens did (41, best epoch 35): the cap keeps the stage's cost at most
    ~`USER_EPOCH_FLOOR` epochs, linear in interactions. If `metrics.training.user_tower_best_epoch` equals the
    cap, the tower was still improving: raise `user.epochs` to train longer."""
    scaled = int(math.ceil(cfg.user.epochs * REFERENCE_INTERACTIONS / max(1, stats.n_train)))
    want = min(cfg.user.epochs, max(USER_EPOCH_FLOOR, scaled))
    if want >= cfg.user.epochs:
        return []
    ratio = stats.n_train / REFERENCE_INTERACTIONS
    return [Proposal("user.epochs", want, f"{stats.n_train} train interactions, {ratio:.1f}x MovieLens's per epoch; "
                                          "early stopping still decides")]


def _cadence(section: str, every: int, patience: int, epochs: int, ratio: float, why: str) -> list[Proposal]:
    # past `epochs` only the last epoch is evaluated (the trainers always evaluate it)
    want = min(max(every, epochs), max(every, int(math.ceil(ratio / MAX_EVAL_SHARE))))
    if want <= every:
        return []
    # patience counts evaluations: keep about the same number of epochs without improvement
    pat = max(2, int(math.ceil(patience * every / want)))
    out = [Proposal(f"{section}.eval_every", want, f"{why}: one validation pass ~ {ratio:.2g} epochs")]
    if pat != patience:
        why_pat = f"about {patience * every} epochs without improvement, counted in passes of {want}"
        out.append(Proposal(f"{section}.patience", pat, why_pat, follows=f"{section}.eval_every"))
    return out


def rule_eval_cadence(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """`user.eval_every` / `graph.eval_every` raised so early stopping's validation passes cost at most
    `MAX_EVAL_SHARE` of the training between them; `patience` (counted in passes) lowered to match.

    Why: a validation pass ranks the whole catalogue for every validation user (~ users x items) while an
    epoch costs ~ interactions, so on a large sparse data set validating after every epoch costs more than
    training (see `USER_EVAL_COST`, `GRAPH_EVAL_COST`). The kept checkpoint is then the best of every
    `eval_every`-th epoch. A pass scores at most `eval_sample.EVAL_USERS` users (a seeded sample beyond that),
    so that is what it costs."""
    from .eval_sample import EVAL_USERS

    scored = min(stats.n_eval_users, EVAL_USERS)
    scores = float(scored) * float(stats.n_items)
    n = max(1, stats.n_train)
    steps = max(1, int(math.ceil(n / cfg.graph.batch_size)))
    why = f"{scored} validation users scored x {stats.n_items} items"
    return (_cadence("user", cfg.user.eval_every, cfg.user.patience, cfg.user.epochs, USER_EVAL_COST * scores / n, why)
            + _cadence("graph", cfg.graph.eval_every, cfg.graph.patience, cfg.graph.epochs,
                       GRAPH_EVAL_COST * scores / (steps * n), why))


def rule_ablations(cfg: ExportConfig, stats: DataStats) -> list[Proposal]:
    """Drop the retraining ablations above `ABLATION_MAX_INTERACTIONS` train interactions (see there)."""
    if stats.n_train <= ABLATION_MAX_INTERACTIONS:
        return []
    keep = tuple(a for a in cfg.ablations if a in CHEAP_ABLATIONS)
    if keep == tuple(cfg.ablations):
        return []
    return [Proposal("ablations", keep, f"{stats.n_train} train interactions > {ABLATION_MAX_INTERACTIONS}: "
                                        "retraining ablations (diagnostics only) skipped")]


RULES: tuple[Rule, ...] = (rule_max_length, rule_history, rule_loss, rule_order, rule_decay, rule_graph_batch,
                           rule_user_epochs, rule_eval_cadence, rule_ablations)


# ---------------------------------------------------------------------------------------------- adapt
@dataclass(frozen=True)
class Decision:
    """A value the data chose (`applied`) or would have chosen for a key the user set (`applied` false)."""

    key: str
    value: Any
    """The value in effect: the rule's when applied, else the user's."""
    default: Any
    """The value before the rule: the profile's, or the user's for a kept key."""
    rule: str
    reason: str
    applied: bool = True
    proposed: Any = None
    """The rule's value when it was not applied."""

    def line(self) -> str:
        if self.applied:
            return f"adapt: {self.key} {_show(self.default)} -> {_show(self.value)} ({self.reason})"
        return f"adapt: {self.key} kept at {_show(self.value)} (set explicitly; the data would give " \
               f"{_show(self.proposed)})"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(none)"
    return str(value)


@dataclass
class Adapted:
    """What `adapt` did: the statistics and every decision (JSON-ready via `to_manifest`)."""

    stats: DataStats | None
    decisions: list[Decision] = field(default_factory=list)
    enabled: bool = True

    def to_manifest(self) -> dict[str, Any]:
        def entry(d: Decision) -> dict[str, Any]:
            out = {"key": d.key, "value": _jsonable(d.value), "default": _jsonable(d.default), "rule": d.rule,
                   "reason": d.reason}
            if not d.applied:
                out["proposed"] = _jsonable(d.proposed)
            return out

        return {"enabled": self.enabled, "stats": self.stats.to_dict() if self.stats is not None else None,
                "decisions": [entry(d) for d in self.decisions if d.applied],
                "kept": [entry(d) for d in self.decisions if not d.applied]}

    def lines(self) -> list[str]:
        if not self.enabled:
            return ["adapt: off (config.adapt = false): the profile's values as they are"]
        if not self.decisions:
            return ["adapt: the profile's values suit this data set (no change)"]
        return [d.line() for d in self.decisions]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _get(cfg: ExportConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def adapt(config: ExportConfig, stats: DataStats, explicit: tuple[str, ...] | set[str] | frozenset[str] | None = None,
          rules: tuple[Rule, ...] = RULES) -> tuple[ExportConfig, list[Decision]]:
    """Apply `rules` in order to `config` (each sees the result of the previous ones); keys in `explicit`
    (default: `config.explicit`) are never changed. Returns the new config and every decision, including
    the ones not applied because the key was explicit."""
    explicit_keys = set(config.explicit if explicit is None else explicit)
    cfg = config
    decisions: list[Decision] = []
    for rule in rules:
        applied: set[str] = set()
        changes: dict[str, Any] = {}
        for p in rule(cfg, stats):
            current = _get(cfg, p.key)
            if p.follows is not None and p.follows not in applied:
                continue
            if p.key in explicit_keys:
                if p.value != current:
                    decisions.append(Decision(p.key, current, current, rule.__name__, p.reason, applied=False,
                                              proposed=p.value))
                continue
            if p.value == current:
                continue
            changes[p.key] = p.value
            applied.add(p.key)
            decisions.append(Decision(p.key, p.value, current, rule.__name__, p.reason))
        if changes:
            cfg = cfg.override(changes, source=f"adapt ({rule.__name__})", explicit=False)
    return cfg, decisions


def adapt_to_data(config: ExportConfig, dataset: Dataset, split: Split, source: Any = None,
                  progress: Progress | None = None) -> tuple[ExportConfig, Adapted]:
    """The export's entry point: statistics of `dataset`/`split` (token lengths with `source`'s tokenizer,
    an `EncoderSource`), `adapt`, and the decisions printed through `progress`."""
    tokenizer = None
    if source is not None:
        from .encoder import load_tokenizer

        tokenizer, _ = load_tokenizer(source, max_length=source.max_position_embeddings)
    stats = DataStats.of(dataset, split, tokenizer, seed=config.seed)
    if not config.adapt:
        result = Adapted(stats, enabled=False)
    else:
        config, decisions = adapt(config, stats)
        result = Adapted(stats, decisions)
    if progress is not None:
        for line in result.lines():
            progress.message(line)
    return config, result


__all__ = ["DataStats", "Decision", "Adapted", "Proposal", "adapt", "adapt_to_data", "RULES",
           "FULL_SOFTMAX_MAX_ITEMS", "REFERENCE_INTERACTIONS", "USER_EPOCH_FLOOR", "GRAPH_MAX_STEPS",
           "ABLATION_MAX_INTERACTIONS", "MAX_EVAL_SHARE", "USER_EVAL_COST", "GRAPH_EVAL_COST"]
