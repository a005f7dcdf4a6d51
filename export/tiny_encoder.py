"""A tiny BERT encoder built in code, for tests and CI.

Tests must not depend on downloaded weights and must stay fast on 2 CPU cores, yet they should exercise
the very same code path as the real MiniLM: a Hugging Face directory (config.json, model.safetensors,
vocab.txt, tokenizer.json) loaded with `transformers` and `tokenizers`. `build_tiny_encoder` writes such a
directory: a 2-layer BERT with seeded random weights and a small WordPiece vocabulary that can tokenise
any text (unknown characters fall back to single-character pieces or `[UNK]`).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

from recengine.errors import ExportError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Whole words common in MovieLens-style item text ("title: ...\ngenres: ...\ntags: ...").
_WORDS = """
title genres tags year the a an of and in on at to for with from by is it as or be this that my your his
her their our we you he she they me him them who what when where why how not no yes all one two three four
five six seven eight nine ten first last new old man men woman women girl boy girls boys child children
kid kids family father mother son daughter brother sister friend friends love story life death dead day
night time world city town home house war wars game games king queen prince princess lord ring rings star
stars space planet earth moon sun black white red blue green gold dark light big little small great good
bad best last lost last american america english french german italian japanese chinese indian british
movie movies film films part ii iii iv return returns rise fall end beginning legend legends adventures
adventure animation comedy crime documentary drama fantasy film-noir noir horror imax musical mystery
romance sci-fi sci fi thriller war western action listed no genres
pixar disney funny fun based book novel true classic cult dystopia atmospheric visually stunning twist
ending surreal quirky dark comedy thought provoking superhero marvel dc aliens alien robots robot zombies
zombie vampire vampires magic music musical historical politics murder police detective spy heist
revenge high school college teen romance sports boxing baseball football christmas holiday remake sequel
prequel trilogy franchise oscar winner best picture director actor actress cast soundtrack beautiful
violence violent gore bloody scary suspense psychological mind time travel prison escape island ocean sea
mountain desert jungle road trip car cars plane train ship ghost ghosts monster monsters dragon dragons
wizard witch witches knight knights pirate pirates ninja samurai cowboy cowboys soldier soldiers army
hero heroes villain secret secrets mission impossible dream dreams nightmare island lady mister mr mrs dr
"""

# Frequent word pieces so longer words split into a few pieces rather than single characters.
_SUBWORDS = """
s es ed ing er ers ly y ie ies ion ions al ic ous ful less ness ment tion ity ist ism able an en in on
or ar th he re st nd ch sh ll ee oo ou ea ai
"""


@dataclass(frozen=True)
class TinyEncoderConfig:
    """Shape of the tiny BERT: small enough for a test to fine-tune and export it in seconds."""

    hidden_size: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 64
    max_position_embeddings: int = 128


def tiny_vocabulary() -> list[str]:
    """The WordPiece vocabulary: special tokens, every printable ASCII character (alone and as `##`
    continuation), digits, then MovieLens-ish words and common suffix pieces.

    Every single ASCII letter/digit/punctuation mark is present both as a word start and as a `##`
    continuation, so any ASCII word tokenises without `[UNK]`; other characters (after the BERT
    normaliser strips accents) become `[UNK]`.
    """
    vocab: list[str] = list(SPECIAL_TOKENS)
    seen = set(vocab)

    def add(token: str) -> None:
        if token and token not in seen:
            seen.add(token)
            vocab.append(token)

    chars = string.ascii_lowercase + string.digits + string.punctuation
    for ch in chars:
        add(ch)
    for ch in string.ascii_lowercase + string.digits:
        add("##" + ch)
    for word in _WORDS.split():
        # The BERT pre-tokeniser splits on punctuation, so "sci-fi" arrives as "sci", "-", "fi".
        for part in word.replace("-", " ").split():
            add(part)
    for piece in _SUBWORDS.split():
        add("##" + piece)
    return vocab


def _build_tokenizer_json(vocab: list[str], path: Path, max_length: int) -> None:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    token_to_id = {tok: i for i, tok in enumerate(vocab)}
    tokenizer = Tokenizer(WordPiece(token_to_id, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", token_to_id["[CLS]"]), ("[SEP]", token_to_id["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    tokenizer.save(str(path))


def build_tiny_encoder(
    directory: str | Path, seed: int = 0, config: TinyEncoderConfig | None = None
) -> Path:
    """Write a tiny seeded-random BERT as a Hugging Face directory and return its path.

    The directory holds config.json, model.safetensors, vocab.txt, tokenizer.json and
    tokenizer_config.json, i.e. everything `--encoder DIR` expects. The same seed gives the same weights.
    """
    import torch
    from transformers import BertConfig, BertModel

    cfg = config or TinyEncoderConfig()
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ExportError(
            f"tiny encoder: hidden_size {cfg.hidden_size} is not divisible by "
            f"num_attention_heads {cfg.num_attention_heads}"
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocabulary()

    bert_config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=2,
        pad_token_id=0,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = BertModel(bert_config)
    finally:
        torch.random.set_rng_state(generator_state)
    from .encoder.source import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(out)

    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _build_tokenizer_json(vocab, out / "tokenizer.json", max_length=cfg.max_position_embeddings)
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": True,
                "model_max_length": cfg.max_position_embeddings,
                "unk_token": "[UNK]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "mask_token": "[MASK]",
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return out


__all__ = ["TinyEncoderConfig", "build_tiny_encoder", "tiny_vocabulary", "SPECIAL_TOKENS"]
