"""The GGUF vocabulary → a Hugging Face `tokenizer.json` that gives the original tokenizer's ids.

- A `tokenizer.huggingface.json` entry, when a file has one, is the original: used as it is.
- `tokenizer.ggml.model == "bert"` (WordPiece): llama.cpp's converter marks word-initial pieces
  with "▁" (U+2581) and strips the "##" of continuation pieces, control tokens ([CLS], [SEP], ...)
  (older converters: every bracketed piece) unchanged; this undoes that. The model lower-cases when its vocabulary has no upper-case piece
  (llama.cpp itself always does); [CLS]/[SEP] come from the metadata ids, as llama.cpp adds them.
- `"gpt2"` (byte-level BPE): tokens and merges as stored; the pre-tokenizer is the one that
  `tokenizer.ggml.pre` names (llama.cpp picked that name by hashing the original's output);
  BOS/EOS/SEP are added as the `add_*_token` entries say.
Control tokens become special added tokens, user-defined ones plain added tokens.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .reader import GGUFError, GGUFFile

if TYPE_CHECKING:
    from tokenizers import Tokenizer

NORMAL, CONTROL, USER_DEFINED = 1, 3, 4          # gguf.TokenType
PHANTOM_SPACE = "\u2581"
GPT2_SPLIT = "gpt2"
QWEN2_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
               "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")           # Qwen2's tokenizer.json
# tokenizer.ggml.pre -> (pre-tokenizer split, NFC normalisation), for the vocabularies of the
# supported architectures; llama.cpp's llama-vocab.cpp maps these names to the same two regexes.
PRE_TOKENIZERS = {
    "gpt-2": (GPT2_SPLIT, False), "jina-v2-code": (GPT2_SPLIT, False), "jina-v1-en": (GPT2_SPLIT, False),
    "roberta-bpe": (GPT2_SPLIT, False),
    "qwen2": (QWEN2_SPLIT, True), "deepseek-r1-qwen": (QWEN2_SPLIT, True),
}
ROBERTA_STYLE = ("jina-v2-code", "jina-v1-en", "roberta-bpe")     # llama.cpp adds a separator pair


def build_tokenizer(gguf: GGUFFile) -> Tokenizer:
    from tokenizers import Tokenizer

    original = gguf.value("tokenizer.huggingface.json", None)
    if original is not None:
        return Tokenizer.from_str(original)
    kind = gguf.value("tokenizer.ggml.model")
    tokens = gguf.value("tokenizer.ggml.tokens")
    types = gguf.value("tokenizer.ggml.token_type", [NORMAL] * len(tokens))
    if kind == "bert":
        return _wordpiece(gguf, tokens, types)
    if kind == "gpt2":
        return _byte_level_bpe(gguf, tokens, types)
    raise GGUFError(f"{gguf.path}: cannot rebuild a {kind!r} tokenizer (supported: bert WordPiece, gpt2 BPE)")


def _wordpiece(gguf: GGUFFile, tokens: list[str], types: list[int]) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    pieces = [_wordpiece_piece(token, kind) for token, kind in zip(tokens, types)]
    vocab = {}
    for index, piece in enumerate(pieces):
        vocab.setdefault(piece, index)
    unk = _token(gguf, pieces, "unknown", 100)                   # llama.cpp's defaults for "bert"
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    cased = any(piece != piece.lower() for piece, kind in zip(pieces, types) if kind == NORMAL)
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=not cased)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    cls = _token(gguf, pieces, "cls", None) or _token(gguf, pieces, "bos", 101)
    sep = _token(gguf, pieces, "seperator", 102)                 # sic: llama.cpp's key
    tok.post_processor = _template([cls], [sep], [sep], pair_type=1, vocab=vocab)
    _add_tokens(tok, pieces, types)
    return tok


def _wordpiece_piece(token: str, kind: int) -> str:
    """Undo llama.cpp's phantom-space form. Converters before 2025 also left every bracketed piece
    ([unused0], not only control tokens) unchanged."""
    if kind == CONTROL or (token.startswith("[") and token.endswith("]")):
        return token
    return token[1:] if token.startswith(PHANTOM_SPACE) else "##" + token


def _byte_level_bpe(gguf: GGUFFile, tokens: list[str], types: list[int]) -> Tokenizer:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pre = gguf.value("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"{gguf.path}: cannot rebuild the {pre!r} pre-tokenizer "
                        f"(supported: {', '.join(PRE_TOKENIZERS)})")
    split, nfc = PRE_TOKENIZERS[pre]
    vocab = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)
    merges = [tuple(merge.split(" ", 1)) for merge in gguf.value("tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab, merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    if split == GPT2_SPLIT:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    bos, eos = _added(gguf, tokens, "bos"), _added(gguf, tokens, "eos")
    if pre in ROBERTA_STYLE or gguf.value("tokenizer.ggml.add_sep_token", False):
        tok.post_processor = _template(bos, eos, eos + eos, pair_type=0, vocab=vocab)
    elif bos or eos:
        tok.post_processor = _template(bos, eos, eos, pair_type=0, vocab=vocab)
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    _add_tokens(tok, tokens, types)
    return tok


def _token(gguf: GGUFFile, tokens: list[str], name: str, default: int | None) -> str | None:
    """The token that `tokenizer.ggml.{name}_token_id` names (or the id `default`)."""
    index = gguf.value(f"tokenizer.ggml.{name}_token_id", default)
    if index is None:
        return None
    if not 0 <= index < len(tokens):
        raise GGUFError(f"{gguf.path}: tokenizer.ggml.{name}_token_id {index} is outside the vocabulary")
    return tokens[index]


def _added(gguf: GGUFFile, tokens: list[str], name: str) -> list[str]:
    """[the token] when `tokenizer.ggml.add_{name}_token` says to add it, else []."""
    if not gguf.value(f"tokenizer.ggml.add_{name}_token", False):
        return []
    token = _token(gguf, tokens, name, None)
    if token is None:
        raise GGUFError(f"{gguf.path}: GGUF metadata has no tokenizer.ggml.{name}_token_id")
    return [token]


def _template(first: list[str], last: list[str], middle: list[str], *, pair_type: int, vocab: dict[str, int]):
    """[first] $A [last] for one text; [first] $A [middle] $B [last] for a pair."""
    from tokenizers import processors

    b = f":{pair_type}"
    single = [*first, "$A", *last]
    pair = [*first, "$A", *middle, f"$B{b}", *(f"{t}{b}" for t in last)]
    specials = sorted({(t, vocab[t]) for t in first + last + middle})
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def _add_tokens(tok: Tokenizer, tokens: list[str], types: list[int]) -> None:
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(tokens, types) if kind == CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, kind in zip(tokens, types) if kind == USER_DEFINED])
