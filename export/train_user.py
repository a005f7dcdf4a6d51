"""Joint training of the user tower and the gated item vectors (next-item prediction, softmax CE).

Every position of every training window predicts the next item with a softmax over *all* item vectors
(`loss="full"`; on ML-small's 9.7k items this is cheap and clearly beats one-negative BCE) or over shared
uniform negatives (`loss="sampled"`, for catalogues too large for a full softmax). The scene added to each
position is the scene of the *target* event: that is what the runtime passes as the request scene.

The sampled loss computes only the item vectors a batch reads (`ItemVectors.rows`: its history items, targets
and negatives), not the whole catalogue's: computing every row in every batch made the stage's cost grow as
items x batches (`recengine bench export`, 2026-11-30). What remains per batch in the catalogue's size is the
item-dropout draw (n uniforms, kept so the random stream is the one of the full computation) and the
optimizer's dense step over the graph vectors (AdamW moves rows with past gradients too), fused to one pass
(`export.optim`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recengine.bundle.format import left_pad
from recengine.evaluation import Queries, csr_rows, evaluate_queries, histories
from recengine.progress import Progress
from recengine.split import Split, to_csr

from .config import UserConfig
from .item_vectors import ItemVectors
from .optim import adam
from .user_tower import UserTower


@dataclass
class Windows:
    """Training windows: inputs/targets left-padded with -1, the target events' scenes, the user."""

    inputs: np.ndarray
    targets: np.ndarray
    scenes: np.ndarray
    users: np.ndarray


def make_windows(split: Split, train_scene: np.ndarray, max_history: int, per_user: int,
                 shuffle_seed: int | None = None) -> Windows:
    """Cut each user's train sequence into windows of `max_history`+1 items, most recent first.

    `shuffle_seed`: each user's train events are first put in a random order drawn from it (data without
    timestamps, whose order is arbitrary: a new order per epoch pairs each target with other histories)."""
    indptr, rows = to_csr(split.train.user, np.arange(len(split.train), dtype=np.int64), split.n_users)
    if shuffle_seed is not None:
        keys = np.random.default_rng(shuffle_seed).random(len(rows))
        rows = rows[np.lexsort((keys, np.repeat(np.arange(split.n_users), np.diff(indptr))))]
    items_all = split.train.item.astype(np.int64)
    slots = train_scene.shape[1]
    inputs, targets, scenes, users = [], [], [], []
    for u in range(split.n_users):
        r = rows[indptr[u]:indptr[u + 1]]
        end, made = len(r), 0
        while end >= 2 and made < per_user:
            start = max(0, end - max_history - 1)
            seq = items_all[r[start:end]]
            n = len(seq) - 1
            inp = np.full(max_history, -1, np.int64)
            tgt = np.full(max_history, -1, np.int64)
            scn = np.zeros((max_history, slots), np.int64)
            inp[max_history - n:] = seq[:-1]
            tgt[max_history - n:] = seq[1:]
            scn[max_history - n:] = train_scene[r[start + 1:end]]
            inputs.append(inp), targets.append(tgt), scenes.append(scn), users.append(u)
            made += 1
            end = start + 1
    if not inputs:
        z = np.zeros((0, max_history), np.int64)
        return Windows(z, z, np.zeros((0, max_history, slots), np.int64), np.zeros(0, np.int64))
    return Windows(np.stack(inputs), np.stack(targets), np.stack(scenes), np.asarray(users, np.int64))


def batch_loss(tower: UserTower, items: ItemVectors, inp: torch.Tensor, tgt: torch.Tensor, scene: torch.Tensor,
               profile: torch.Tensor, loss: str, n_negatives: int, p_drop: float, gen: torch.Generator,
               device: torch.device) -> tuple[torch.Tensor, int]:
    """Next-item CE of one batch of windows (inputs/targets [B, L], -1 = padding; scene [B, L, S], profile
    [B, P]) and its number of predicted positions.

    `gen` draws, in this order, the item-dropout mask (n uniforms) and, for the sampled loss, the shared
    negatives. The full softmax (`loss="full"`, or at least as many negatives as items) needs every item
    vector; the sampled loss computes only the rows it reads, with the same values and gradients.
    """
    n_items = items.log_pop.shape[0]
    sel = tgt >= 0
    y = tgt[sel]
    if loss == "full" or n_negatives >= n_items:
        vectors = items(p_drop, gen)
        hist, mask = gather_history(vectors, inp)
        h = _hidden(tower, hist, mask, scene, profile)[sel]
        return F.cross_entropy(h @ vectors.T, y), len(y)
    keep = items.dropout_keep(p_drop, gen)
    neg = torch.randint(0, n_items, (n_negatives,), generator=gen).to(device)
    mask = (inp >= 0).to(items.text.dtype)
    hist = items.rows(inp.clamp_min(0), keep) * mask.unsqueeze(-1)
    h = _hidden(tower, hist, mask, scene, profile)[sel]
    pos_logit = (h * items.rows(y, keep)).sum(-1, keepdim=True)
    neg_logit = h @ items.rows(neg, keep).T
    neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == y.unsqueeze(1), -1e9)
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=device)), len(y)


def _hidden(tower: UserTower, hist: torch.Tensor, mask: torch.Tensor, scene: torch.Tensor,
            profile: torch.Tensor) -> torch.Tensor:
    """The tower's state at every position [B, L, d], plus each target event's scene and the profile."""
    out = tower.sequence(hist, mask)
    ctx = tower.context(scene, profile.unsqueeze(1))
    return out + ctx if isinstance(ctx, torch.Tensor) else out


def gather_history(vectors: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """History tensor [B, L, d] (zeros at padding) and its mask [B, L] from item rows (-1 = padding)."""
    mask = (items >= 0).to(vectors.dtype)
    hist = vectors[items.clamp_min(0)] * mask.unsqueeze(-1)
    return hist, mask


class UserScorer:
    """Scores every item for a batch of query users with the current tower (eval mode)."""

    def __init__(self, tower: UserTower, items: ItemVectors, profiles: np.ndarray, device: torch.device) -> None:
        self.tower, self.items, self.profiles, self.device = tower, items, profiles, device

    @torch.no_grad()
    def user_vectors(self, hist_items: np.ndarray, scene: np.ndarray, profile: np.ndarray) -> np.ndarray:
        self.tower.eval()
        vectors = self.items()
        hist, mask = gather_history(vectors, torch.from_numpy(hist_items).to(self.device))
        out = self.tower(hist, mask, torch.from_numpy(scene).to(self.device), torch.from_numpy(profile).to(self.device))
        return out.cpu().numpy()

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        return self.items().cpu().numpy()


def query_inputs(split: Split, stage: str, queries: Queries, scenes: np.ndarray, profiles: np.ndarray,
                 max_history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """History rows, scene and profile codes of every query of `stage` (scene of the held-out event)."""
    indptr, indices = histories(split, stage)
    hist = left_pad(csr_rows(indptr, indices, queries.users), max_history, fixed=True)
    return hist, scenes[queries.scene_rows], profiles[queries.users]


@dataclass
class UserTrainResult:
    best_ndcg: float
    epochs_run: int
    history: list[dict[str, float]]
    best_epoch: int = 0
    """Epoch whose weights were kept (the refit on train+valid trains for this many epochs)."""


def train_user_tower(tower: UserTower, items: ItemVectors, split: Split, windows: Windows, profiles: np.ndarray,
                     valid_queries: Queries | None, valid_scenes: np.ndarray | None, cfg: UserConfig, seed: int,
                     device: torch.device, progress: Progress, item_dropout: float | None = None,
                     fixed_epochs: int | None = None,
                     rewindow: Callable[[int], Windows] | None = None) -> UserTrainResult:
    """AdamW on next-item CE; evaluates validation NDCG@10 every `eval_every` epochs and keeps the best.

    With `fixed_epochs`, trains exactly that many epochs with no validation (the refit on train+valid, whose
    epoch count was early-stopped on the first fit); `valid_queries` is then unused. `rewindow(epoch)`, when
    given, supplies each epoch after the first its own windows (`make_windows` with a new `shuffle_seed`).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    p_drop = cfg.item_dropout if item_dropout is None else item_dropout
    params = list(tower.parameters()) + list(items.parameters())
    opt = adam(params, cfg.lr, cfg.weight_decay)
    shadow = [p.detach().clone() for p in params] if cfg.ema > 0 else None

    def swap_average() -> None:
        """Exchange the live weights and their moving average (called in pairs around an evaluation)."""
        assert shadow is not None
        with torch.no_grad():
            for p, e in zip(params, shadow):
                live = p.detach().clone()
                p.copy_(e)
                e.copy_(live)

    inputs = torch.from_numpy(windows.inputs)
    targets = torch.from_numpy(windows.targets)
    scenes = torch.from_numpy(windows.scenes)
    prof = torch.from_numpy(profiles[windows.users])
    if fixed_epochs is None:
        hist_q, scene_q, prof_q = query_inputs(split, "valid", valid_queries, valid_scenes, profiles, cfg.max_history)
    scorer = UserScorer(tower, items, profiles, device)

    def evaluate() -> float:
        u = scorer.user_vectors(hist_q, scene_q, prof_q)
        v = scorer.item_vectors()
        return evaluate_queries(lambda q: u[q] @ v.T, valid_queries).metrics["ndcg@10"]

    best, best_state, bad, log, best_epoch = -1.0, None, 0, [], 0
    epoch = 0
    n_epochs = cfg.epochs if fixed_epochs is None else fixed_epochs
    bar = progress.bar(range(n_epochs), "user tower")
    for epoch in bar:
        tower.train()
        if rewindow is not None and epoch > 0:
            windows = rewindow(epoch)
            inputs, targets = torch.from_numpy(windows.inputs), torch.from_numpy(windows.targets)
            scenes, prof = torch.from_numpy(windows.scenes), torch.from_numpy(profiles[windows.users])
        perm = torch.randperm(len(inputs), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            inp, tgt = inputs[idx].to(device), targets[idx].to(device)
            loss, n_pred = batch_loss(tower, items, inp, tgt, scenes[idx].to(device), prof[idx].to(device),
                                      cfg.loss, cfg.n_negatives, p_drop, gen, device)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if shadow is not None:
                with torch.no_grad():
                    torch._foreach_mul_(shadow, cfg.ema)
                    torch._foreach_add_(shadow, [p.detach() for p in params], alpha=1.0 - cfg.ema)
            total += float(loss.detach()) * n_pred
            count += n_pred
        entry = {"epoch": epoch + 1, "loss": total / max(count, 1)}
        if fixed_epochs is not None:
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
        elif (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            if shadow is not None:
                swap_average()  # evaluate (and keep, if best) the averaged weights
            score = evaluate()
            entry["val_ndcg@10"] = score
            bar.set_postfix(loss=f"{entry['loss']:.4f}", val_ndcg10=f"{score:.4f}", best=f"{max(best, score):.4f}")
            if score > best:
                best, bad, best_epoch = score, 0, epoch + 1
                best_state = ({k: v.detach().clone() for k, v in tower.state_dict().items()},
                              {k: v.detach().clone() for k, v in items.state_dict().items()})
            else:
                bad += 1
            if shadow is not None:
                swap_average()
            if bad >= cfg.patience:
                log.append(entry)
                break
        log.append(entry)
    if fixed_epochs is not None and shadow is not None:
        swap_average()  # the refit keeps the averaged weights of its last epoch
    if best_state is not None:
        tower.load_state_dict(best_state[0])
        items.load_state_dict(best_state[1])
    tower.eval()
    if fixed_epochs is not None:
        best_epoch = n_epochs
    return UserTrainResult(best_ndcg=max(best, 0.0), epochs_run=epoch + 1 if n_epochs else 0, history=log,
                           best_epoch=best_epoch)
