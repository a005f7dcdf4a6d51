"""The split export of a fine-tuned text tower (`recengine.export.encoder.split`): the search encoder is the
pre-trained model exactly, the item head reproduces the fine-tuned tower's item vectors, and the ONNX pair
does the same through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recengine.export.align import lora_targets  # noqa: E402
from recengine.export.encoder import (  # noqa: E402
    TextTowerConfig,
    build_text_tower,
    encode_texts,
    export_encoder,
    load_tokenizer,
    resolve_encoder,
    tokenize_batch,
    tokenize_to_tensors,
)
from recengine.export.encoder.split import first_changed_layer, split_tower  # noqa: E402
from recengine.export.onnx_tools import _real_tokens, make_session, run_session  # noqa: E402


@pytest.fixture(scope="module")
def tiny_source(tiny_encoder_dir):
    return resolve_encoder(tiny_encoder_dir)


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_source):
    return load_tokenizer(tiny_source, max_length=32)


TEXTS = ["title: Toy Story (1995)\ngenres: Animation, Children", "a shark attacks a beach town",
         "title: Heat (1995)\ngenres: Action, Crime, Thriller", "x"]


def _trained(source, finetune: str, last: int = 1, seed: int = 0):
    """A tower whose trainable encoder weights moved (as if trained), LoRA/full in the last `last` layers."""
    cfg = TextTowerConfig(item_dim=8, finetune=finetune, lora_targets=lora_targets(source, last),
                          full_last_layers=last, seed=seed)
    tower = build_text_tower(source, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tower.named_parameters():
            if p.requires_grad and "projection" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return tower.eval()


def _pretrained_text(source, tokenizer, info) -> np.ndarray:
    frozen = build_text_tower(source, TextTowerConfig(item_dim=8, finetune="none")).eval()
    return encode_texts(frozen, tokenizer, TEXTS, pad_id=info.pad_id)[0].numpy()


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_split_search_is_the_pretrained_encoder_and_the_head_the_tuned_one(tiny_source, tiny_tokenizer,
                                                                            finetune) -> None:
    tokenizer, info = tiny_tokenizer
    tower = _trained(tiny_source, finetune)
    split = split_tower(tower)
    assert split is not None and split.start == 1  # the tiny encoder has 2 layers; the last one trained
    tuned_text, tuned_item = encode_texts(tower, tokenizer, TEXTS, pad_id=info.pad_id)
    text, item = encode_texts(split, tokenizer, TEXTS, pad_id=info.pad_id)
    np.testing.assert_allclose(text.numpy(), _pretrained_text(tiny_source, tokenizer, info), atol=1e-5)
    np.testing.assert_allclose(item.numpy(), tuned_item.numpy(), atol=1e-5)
    # the fine-tuning did move the text embedding: the split is what keeps the search space
    assert np.abs(tuned_text.numpy() - text.numpy()).max() > 1e-3
    # every layer of both parts is exported with eager attention (the form the BERT fusions match), the
    # pre-trained layers `finetune="full"` restores included
    for part in (split.search.backbone, split.head.tail):
        assert {layer.attention.self.config._attn_implementation for layer in part.encoder.layer} == {"eager"}
    ids, mask = tokenize_to_tensors(tokenizer, TEXTS, info.pad_id)
    with torch.no_grad():
        search, tuned, item3 = split.encode_all(ids, mask)
    np.testing.assert_allclose(tuned.numpy(), tuned_text.numpy(), atol=1e-5)  # the cold generator's input
    np.testing.assert_allclose(item3.numpy(), tuned_item.numpy(), atol=1e-5)


def test_split_is_none_where_nothing_or_everything_trained(tiny_source) -> None:
    frozen = build_text_tower(tiny_source, TextTowerConfig(item_dim=8, finetune="none"))
    assert split_tower(frozen) is None
    untrained = build_text_tower(tiny_source, TextTowerConfig(item_dim=8, lora_targets=lora_targets(tiny_source, 1)))
    assert split_tower(untrained) is None  # LoRA's B starts at zero: no weight differs yet
    every_layer = _trained(tiny_source, "lora", last=2)  # 2 of 2 layers: nothing below to share
    assert split_tower(every_layer) is None


def test_first_changed_layer_compares_weights(tiny_source) -> None:
    tower = _trained(tiny_source, "full")
    from recengine.export.encoder.split import _pretrained_backbone

    pretrained = _pretrained_backbone(tower)
    assert first_changed_layer(pretrained, tower.backbone) == 1
    assert first_changed_layer(pretrained, pretrained) is None


def test_real_tokens_ignores_padding_positions() -> None:
    states = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    batch = {"attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])}
    assert _real_tokens(states, batch).shape == (3, 2)
    pooled = np.ones((2, 4), np.float32)
    assert _real_tokens(pooled, batch) is pooled  # per-row outputs are compared whole


@pytest.fixture(scope="module")
def split_export(tmp_path_factory, tiny_source, tiny_tokenizer):
    tokenizer, info = tiny_tokenizer
    tower = _trained(tiny_source, "lora")
    out = export_encoder(tower, tmp_path_factory.mktemp("split") / "models", tokenizer, info, parity_texts=TEXTS)
    return tower, out


def test_split_export_writes_encoder_and_item_head_with_parity(split_export) -> None:
    _, out = split_export
    assert out.item_head is not None and set(out.reports) == {"encoder", "item_head"}
    enc, head = out.encoder, out.item_head
    assert set(enc.paths) == set(head.paths) == {"fp32", "int8", "fp16"} and not enc.dropped and not head.dropped
    entry = enc.manifest_entry()
    assert [o["name"] for o in entry["outputs"]] == ["text_embedding", "item_states"]
    assert entry["outputs"][1]["shape"] == ["B", "T", 32]
    head_entry = head.manifest_entry()
    assert [i["name"] for i in head_entry["inputs"]] == ["item_states", "attention_mask"]
    assert [o["name"] for o in head_entry["outputs"]] == ["item_vector"]
    # the search encoder keeps every BERT fusion (the shared embeddings and both layers)
    assert enc.graph["fused_ops"].get("EmbedLayerNormalization") == 1 and enc.graph["fused_ops"].get("Attention") == 2
    assert head.graph["fused_ops"].get("Attention") == 1
    assert enc.parity["int8_mean_cos"] >= 0.98 and head.parity["int8_mean_cos"] >= 0.98


def test_split_onnx_pair_reproduces_the_torch_towers(split_export, tiny_source, tiny_tokenizer) -> None:
    tower, out = split_export
    tokenizer, info = tiny_tokenizer
    _, tuned_item = encode_texts(tower, tokenizer, TEXTS, pad_id=info.pad_id)
    enc = make_session(out.encoder.paths["fp32"])
    head = make_session(out.item_head.paths["fp32"])
    ids, mask = tokenize_batch(tokenizer, TEXTS, info.pad_id)
    text, states = run_session(enc, {"input_ids": ids, "attention_mask": mask})
    (item,) = run_session(head, {"item_states": states, "attention_mask": mask})
    np.testing.assert_allclose(text, _pretrained_text(tiny_source, tokenizer, info), atol=1e-4)
    np.testing.assert_allclose(item, tuned_item.numpy(), atol=1e-4)


def test_split_off_exports_one_graph_with_the_tuned_text(tmp_path, tiny_source, tiny_tokenizer) -> None:
    tokenizer, info = tiny_tokenizer
    tower = _trained(tiny_source, "lora")
    out = export_encoder(tower, tmp_path, tokenizer, info, parity_texts=TEXTS, split=False)
    assert out.item_head is None
    ids, mask = tokenize_batch(tokenizer, TEXTS, info.pad_id)
    text, _ = run_session(make_session(out.encoder.paths["fp32"]), {"input_ids": ids, "attention_mask": mask})
    tuned_text, _ = encode_texts(tower, tokenizer, TEXTS, pad_id=info.pad_id)
    np.testing.assert_allclose(text, tuned_text.numpy(), atol=1e-4)
