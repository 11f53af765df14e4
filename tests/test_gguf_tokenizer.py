"""Tokenizers rebuilt from GGUF vocabularies give the original tokenizer.json's ids: WordPiece
(the real MiniLM vocabulary, uncased and cased fixtures) and byte-level BPE (RoBERTa-style jina
code, Qwen with the GPT-2 and the Qwen2 pre-tokenizer, with and without an appended EOS)."""
from __future__ import annotations

import json

import pytest
from checkpoints import CORPUS, bpe_tokenizer, make_bert, make_jinabert, wordpiece_tokenizer
from gguf_fixtures import BERT_CONFIG, QWEN_CONFIG, ROBERTA_CONFIG, write_gguf
from onnx_fixtures import minilm  # noqa: F401  (fixture)
from qwen_fixtures import make_qwen
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from convert.from_gguf import GGUFError
from convert.from_gguf.reader import open_gguf
from convert.from_gguf.vocab import build_tokenizer

MIXED = CORPUS + [
    "", " ", "x", "def  __init__(self,\tname):\n\t\treturn   name\r\n\r\n",
    "if (a<=b && c!=d) { x += y[i]; } // ✓ done",
    "naïve café RÉSUMÉ Straße ﬁne ÅNGSTRÖM",              # accents, ligature, upper case
    "日本語のテキスト 中文 한국어 العربية עברית",
    "emoji 🚀🦙 and ZWJ 👩\u200d💻 sequences",
    "numbers 3 33 333 3333 3.14159 1e-10 0x1F",
    "    leading and trailing spaces    ", "\n\n\nnew\n\nlines\n", "tabs\t\tand\u00a0nbsp\u2003em space",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea?",
    "'''''```````\"\"\"\"......!!!!!!??????------=======",
    "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case",
    "https://example.com/path?query=1&x=y#frag user@example.com",
]


def rebuilt(tmp_path, src, arch: str, **kwargs) -> Tokenizer:
    return build_tokenizer(open_gguf(write_gguf(src, tmp_path / "vocab.gguf", arch, weights=False, **kwargs)))


def assert_same_ids(original: Tokenizer, tokenizer: Tokenizer, texts=MIXED) -> None:
    """Same ids for every text and pair of texts; for WordPiece (BERT) also the same segment ids
    (decoders have no token-type embedding)."""
    original.no_padding()
    original.no_truncation()
    for text in texts:
        assert tokenizer.encode(text).ids == original.encode(text).ids, repr(text)
    for a, b in zip(texts[::2], texts[1::2]):
        got, want = tokenizer.encode(a, b), original.encode(a, b)
        assert got.ids == want.ids, (a, b)
        if isinstance(original.model, models.WordPiece):
            assert got.type_ids == want.type_ids, (a, b)


@pytest.mark.parametrize("bracketed", [False, True], ids=["2025-converter", "2024-converter"])
def test_real_minilm_wordpiece(tmp_path, minilm, bracketed):
    """The real 30,522-piece vocabulary (bert-base-uncased's): phantom-space pieces back to WordPiece,
    lower-casing kept; 2024 converters also left [unused0]-style pieces without "▁"."""
    config = json.loads((minilm / "tokenizer_config.json").read_text())
    tokenizer = rebuilt(tmp_path, minilm, "bert", tokenizer_config=config, bracketed=bracketed)
    original = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    assert tokenizer.get_vocab() == original.get_vocab()             # every piece, [unused0] included
    specials = ["[CLS] literal [SEP] tokens [MASK] [UNK] [PAD] [unused0] [unused99]"]
    assert_same_ids(original, tokenizer, MIXED + specials)


@pytest.mark.parametrize("cased", [False, True])
def test_wordpiece_case_follows_the_vocabulary(tmp_path, cased):
    src = make_bert(tmp_path / "src")
    original = wordpiece_tokenizer()
    if cased:        # a cased vocabulary: upper-case pieces, no lower-casing
        vocab = original.get_vocab()
        for word in ("Def", "Class", "HTTP", "Résumé"):
            vocab[word] = len(vocab)
        original = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        original.normalizer = normalizers.BertNormalizer(lowercase=False)
        original.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        original.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
        original.save(str(src / "tokenizer.json"))
        config = json.loads((src / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**config, "vocab_size": len(vocab)}))
    # hub tokenizers list their special tokens as added tokens (the GGUF writer adds them)
    original.add_special_tokens(["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"])
    tokenizer = rebuilt(tmp_path, src, "bert", tokenizer_config=BERT_CONFIG)
    assert tokenizer.normalizer.lowercase is not cased
    assert_same_ids(original, tokenizer, MIXED + ["Def Class HTTP Résumé def class http résumé"])


def test_roberta_style_bpe(tmp_path):
    """jina-embeddings-v2-base-code's layout: GPT-2 byte-level pre-tokenizer, <s> … </s>, pairs
    joined with </s></s>."""
    src = make_jinabert(tmp_path / "src")
    original = bpe_tokenizer()
    original.add_special_tokens(["<s>", "</s>", "<unk>", "<pad>", "<mask>"])
    tokenizer = rebuilt(tmp_path, src, "jina-bert-v2", tokenizer_config=ROBERTA_CONFIG, pre="jina-v2-code")
    assert_same_ids(original, tokenizer, MIXED + ["<s> and </s> inside <mask> text"])


@pytest.mark.parametrize("append_eos", [False, True])
def test_qwen_bpe_with_gpt2_pre_tokenizer(tmp_path, append_eos):
    """The suite's Qwen fixtures split like GPT-2 (ByteLevel's own regex): llama.cpp names that "gpt-2"."""
    src = make_qwen(tmp_path / "src", append_eos=append_eos)
    tokenizer = rebuilt(tmp_path, src, "qwen2", tokenizer_config=QWEN_CONFIG, pre="gpt-2")
    assert_same_ids(Tokenizer.from_file(str(src / "tokenizer.json")), tokenizer, MIXED + ["a<|endoftext|>b <|im_start|>"])


QWEN2_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
               "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def test_qwen2_pre_tokenizer(tmp_path):
    """A vocabulary built like Qwen2's tokenizer.json (NFC, the Qwen2 split regex, byte-level
    without its own regex), named "qwen2" as llama.cpp's hash check names the real one."""
    src = make_qwen(tmp_path / "src", append_eos=True)
    original = Tokenizer(models.BPE())
    original.normalizer = normalizers.NFC()
    original.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    original.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    original.train_from_iterator(CORPUS + MIXED, trainer)
    eos = original.token_to_id("<|endoftext|>")
    original.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1", special_tokens=[("<|endoftext|>", eos)])
    original.save(str(src / "tokenizer.json"))
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "vocab_size": original.get_vocab_size()}))
    tokenizer = rebuilt(tmp_path, src, "qwen2", tokenizer_config=QWEN_CONFIG, pre="qwen2")
    decomposed = "cafe\u0301 Ange\u0301lique"                     # NFC composes these before splitting
    assert_same_ids(original, tokenizer, MIXED + [decomposed, "x<|endoftext|>y"])
    assert original.encode("3333").ids == tokenizer.encode("3333").ids and len(tokenizer.encode("3333").ids) == 5


def test_embedded_tokenizer_json_is_used_as_it_is(tmp_path):
    import gguf

    original = wordpiece_tokenizer()
    path = tmp_path / "embedded.gguf"
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_string("tokenizer.huggingface.json", original.to_str())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert json.loads(build_tokenizer(open_gguf(path)).to_str()) == json.loads(original.to_str())


@pytest.mark.parametrize("pre, model, message", [
    ("llama-bpe", "gpt2", "cannot rebuild the 'llama-bpe' pre-tokenizer (supported: gpt-2, jina-v2-code, "
                          "jina-v1-en, roberta-bpe, qwen2, deepseek-r1-qwen)"),
    (None, "llama", "cannot rebuild a 'llama' tokenizer (supported: bert WordPiece, gpt2 BPE)"),
])
def test_unsupported_vocabularies(tmp_path, pre, model, message):
    import gguf

    path = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tokenizer_model(model)
    if pre:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(["a", "b"])
    writer.add_token_merges(["a b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError) as err:
        build_tokenizer(open_gguf(path))
    assert str(err.value) == f"{path}: {message}"
