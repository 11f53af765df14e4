"""`hhg convert`: Hugging Face checkpoints and GGUF files → self-describing hhg model folders (MLX and ONNX).

Converted folder layout (read by `hhg_mlx.loader.load_encoder`, like any model folder):

    config.json          the source's config.json, plus mlx-lm's `"quantization": {"group_size", "bits"}`
                         when the weights are quantised and `"torch_dtype"` set to the stored dtype
    hhg.json             {"format": 1, "architecture": "jinabert" | "bert" | "nomic_bert" | "qwen2" | "qwen3",
                          "variant": "qk-post-norm" | "base-en" | null,
                          "kind": "embedding" | "reranker" (a cross-encoder), "model_id", "pooling",
                          "query_prefix", "document_prefix", "max_length",
                          "dim": default Matryoshka truncation | null, "matryoshka_dims": [...],
                          "matryoshka_layer_norm": layer-norm before truncating (nomic-embed-text-v1.5),
                          "dtype": "float32" | "float16" | "bfloat16",
                          "quantization": {"bits": 8 | 4, "group_size": 64} | null,
                          "source": {"model": SRC as given, "repo": "org/name" | null,
                                     "revision": commit | null, "sha256": {file: hex digest},
                                     GGUF sources also: "format": "gguf", "quantization": "Q4_K_M" ...},
                          "onnx": {"fp32": "model.onnx", "int8": ..., "fp16": ...}}
                         (pooling, prefixes and length only for JinaBERT/BERT/NomicBERT; Qwen folders keep
                         the sentence-transformers files for theirs)
    model.safetensors    MLX layout: checkpoint names after the model's `sanitize` (no `bert.`
                         prefix, no pooler/MLM head), as saved by `mx.save_safetensors`; quantised
                         Linear layers as `weight` (packed uint32), `scales`, `biases` (`nn.quantize`)
    tokenizer.json, tokenizer_config.json, special_tokens_map.json, modules.json, 1_Pooling/,
    sentence_bert_config.json, config_sentence_transformers.json   copied from the source (a GGUF
                         source: tokenizer.json rebuilt from its vocabulary)
    model.onnx, model.q8.onnx, model.fp16.onnx   optional ONNX graphs (`--onnx`, `--onnx-int8`,
                         `--onnx-fp16`): inputs input_ids/attention_mask int64 [batch, seq],
                         output last_hidden_state float32 [batch, seq, hidden]; a reranker's also
                         reads token_type_ids and outputs logits float32 [batch]; see `onnx_graph`.

Cross-encoder rerankers (`*ForSequenceClassification`) convert the same way, head included: the
MLX weights keep `pooler.*` and `classifier.*` (models/cross_encoder.py's names).

Modules: `cli` (the command), `mlx` (MLX weights for JinaBERT/BERT/NomicBERT), `qwen` (mlx-lm models),
`onnx_graph` (graph builder, no PyTorch), `onnx_int8` (the CPU int8 graph), `onnx_export` (fp32/int8/fp16
files, export cache), `weights` (safetensors ↔ numpy, bfloat16 included), `from_gguf` (GGUF files → Hugging
Face folders).
"""
