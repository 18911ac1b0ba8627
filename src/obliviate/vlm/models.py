"""One CLIP-style interface over Hugging Face ``CLIPModel``, local folders only, and a tiny CLIP for offline work.

:class:`ClipModel` exposes what prompt learning needs, layer by layer: the vision tokens after the patch embedding,
one vision layer at a time (deep visual prompts replace tokens between layers), the image head (post-LayerNorm of the
class token and the projection), word embeddings and the text transformer on given embeddings (learnable text
context), and the logit scale. Images enter as RGB in [0, 1]; the model resizes them to its size and normalises them
with its own mean and standard deviation.

``tiny_clip(config)`` builds a small ``CLIPModel`` (a ViT with patch tokens, a causal text transformer, a logit scale)
with a word-level tokenizer; ``pretrained_tiny_clip`` trains it contrastively on domain-mnist image-caption pairs
("a photo of the digit three") so that it recognises digits zero-shot in every domain, cached through
:class:`~obliviate.store.ModelCache`. ``load_clip(DIR)`` loads a user's CLIP from a local folder; nothing downloads.
open_clip checkpoints are not supported: open-clip-torch needs torchvision, which this project does not require.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ObliviateError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SPECIAL = ("<pad>", "<unk>", "<bos>", "<eos>")


class ClipModel(nn.Module):
    """A CLIP-style model (a Hugging Face ``CLIPModel`` inside) with layer-wise access for prompt learning.

    Args:
        hf: the ``CLIPModel``.
        tokenizer: a Hugging Face tokenizer that adds the start and end tokens.
        mean, std: per-channel image normalisation; image_size: the vision tower's input size.
    """

    def __init__(self, hf: nn.Module, tokenizer, mean=CLIP_MEAN, std=CLIP_STD, image_size: Optional[int] = None):
        super().__init__()
        self.hf = hf
        self.tokenizer = tokenizer
        self.image_size = int(image_size or hf.config.vision_config.image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        layer = hf.vision_model.encoder.layers[0]
        self._legacy_layer = "causal_attention_mask" in inspect.signature(layer.forward).parameters

    # ---- sizes
    @property
    def vision_width(self) -> int:
        return self.hf.config.vision_config.hidden_size

    @property
    def text_width(self) -> int:
        return self.hf.config.text_config.hidden_size

    @property
    def num_vision_layers(self) -> int:
        return len(self.hf.vision_model.encoder.layers)

    @property
    def max_text_length(self) -> int:
        return self.hf.config.text_config.max_position_embeddings

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.hf.logit_scale.exp()

    # ---- vision
    def vision_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> tokens [B, 1 + patches, width] (class token first), before layer 0."""
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        pixels = (images - self.mean) / self.std
        vm = self.hf.vision_model
        return vm.pre_layrnorm(vm.embeddings(pixels.to(vm.embeddings.patch_embedding.weight.dtype)))

    def vision_layer(self, i: int, tokens: torch.Tensor) -> torch.Tensor:
        return self._call(self.hf.vision_model.encoder.layers[i], tokens, None)

    def image_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final tokens -> image embedding (not normalised)."""
        return self.hf.visual_projection(self.hf.vision_model.post_layernorm(tokens[:, 0]))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        h = self.vision_tokens(images)
        for i in range(self.num_vision_layers):
            h = self.vision_layer(i, h)
        return self.image_head(h)

    # ---- text
    def tokenize(self, texts: Sequence[str]):
        """Token ids [N, T] (right-padded) and the position of each text's end token [N]."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_text_length,
                             return_tensors="pt")
        ids = enc["input_ids"].to(self.hf.logit_scale.device)
        eos = enc["attention_mask"].sum(1).to(ids.device) - 1
        return ids, eos

    def word_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf.text_model.embeddings.token_embedding(ids)

    def encode_text_embeddings(self, embeds: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
        """Word embeddings [N, T, width] (positions not yet added) -> text embeddings [N, dim] read at ``eos``."""
        tm = self.hf.text_model
        length = embeds.shape[1]
        if length > self.max_text_length:
            raise ObliviateError(f"the prompt has {length} tokens; this text encoder takes at most {self.max_text_length}")
        h = tm.embeddings(inputs_embeds=embeds)
        mask = torch.full((length, length), torch.finfo(h.dtype).min, device=h.device, dtype=h.dtype).triu(1)
        mask = mask[None, None]
        for layer in tm.encoder.layers:
            h = self._call(layer, h, mask)
        h = tm.final_layer_norm(h)
        return self.hf.text_projection(h[torch.arange(len(h), device=h.device), eos])

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        ids, eos = self.tokenize(texts)
        return self.encode_text_embeddings(self.word_embeddings(ids), eos)

    def _call(self, layer, h, mask):
        out = layer(h, mask, None) if self._legacy_layer else layer(h, mask)
        return out[0] if isinstance(out, tuple) else out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)


def freeze(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def zero_shot_logits(clip: ClipModel, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    img = F.normalize(clip.encode_image(images), dim=-1)
    return clip.logit_scale * img @ F.normalize(text_features, dim=-1).t()


# ---------------------------------------------------------------- loading a user's CLIP
def load_clip(path: str | Path) -> ClipModel:
    """A Hugging Face ``CLIPModel`` with its tokenizer from a local folder (``save_pretrained`` layout). The image
    mean, std and size come from ``preprocessor_config.json`` when present, else CLIP's values."""
    path = Path(path)
    needed = ["config.json"]
    weights = list(path.glob("*.safetensors")) + list(path.glob("pytorch_model*.bin"))
    missing = [n for n in needed if not (path / n).exists()] + ([] if weights else ["model.safetensors"])
    if not path.is_dir() or missing:
        raise ObliviateError(f"--model {path}: expected a local Hugging Face CLIPModel folder with "
                             f"{', '.join(missing or needed)} (and tokenizer files); nothing is downloaded")
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") != "clip":
        raise ObliviateError(f"--model {path}: config.json has model_type {config.get('model_type')!r}, not 'clip' "
                             f"(open_clip checkpoints are not supported: convert them to a Hugging Face CLIPModel)")
    from transformers import AutoTokenizer, CLIPModel
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - a missing or broken tokenizer is a user error
        raise ObliviateError(f"--model {path}: cannot load its tokenizer ({type(e).__name__}); the folder needs "
                             f"tokenizer.json or vocab.json + merges.txt") from None
    hf = CLIPModel.from_pretrained(path, local_files_only=True, attn_implementation="eager").eval()
    mean, std, size = CLIP_MEAN, CLIP_STD, None
    pre = path / "preprocessor_config.json"
    if pre.exists():
        p = json.loads(pre.read_text())
        mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
        crop = p.get("crop_size")
        size = crop.get("height") if isinstance(crop, dict) else crop
    return freeze(ClipModel(hf, tokenizer, mean, std, size))


# ---------------------------------------------------------------- the tiny CLIP
@dataclasses.dataclass
class TinyClipConfig:
    """Sizes of the tiny CLIP (a ViT image encoder with patch tokens, a causal text transformer, a logit scale)."""
    image_size: int = 16
    patch_size: int = 4
    vision_width: int = 64
    vision_layers: int = 3
    text_width: int = 64
    text_layers: int = 2
    heads: int = 4
    embed_dim: int = 64
    max_text_length: int = 24


def word_tokenizer(words: Sequence[str]):
    """A lower-case word-level tokenizer (Hugging Face fast tokenizer) that wraps texts in <bos> ... <eos>."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(list(SPECIAL) + sorted(set(w.lower() for w in words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>",
                                                       special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


def caption_words() -> list:
    from .data import DIGIT_NAMES, MNIST_DOMAINS
    return list(DIGIT_NAMES) + list(MNIST_DOMAINS) + "a an photo of the digit picture image . ,".split()


def tiny_clip(config: TinyClipConfig = TinyClipConfig(), seed: int = 0) -> ClipModel:
    """A randomly initialised tiny CLIP (seeded), built from a ``CLIPConfig`` offline."""
    from transformers import CLIPConfig
    from transformers import CLIPModel
    tokenizer = word_tokenizer(caption_words())
    c = config
    hf_config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=c.text_width, intermediate_size=4 * c.text_width,
                         num_hidden_layers=c.text_layers, num_attention_heads=c.heads,
                         max_position_embeddings=c.max_text_length, pad_token_id=0, bos_token_id=2, eos_token_id=3),
        vision_config=dict(hidden_size=c.vision_width, intermediate_size=4 * c.vision_width,
                           num_hidden_layers=c.vision_layers, num_attention_heads=c.heads, image_size=c.image_size,
                           patch_size=c.patch_size, num_channels=3),
        projection_dim=c.embed_dim)
    hf_config._attn_implementation = "eager"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        hf = CLIPModel(hf_config)
    return ClipModel(hf, tokenizer, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), c.image_size)


@dataclasses.dataclass
class PretrainRecipe:
    """Contrastive pre-training of the tiny CLIP on domain-mnist image-caption pairs (AdamW, linear warm-up, cosine
    decay, gradient clipping at norm 1)."""
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30
    seed: int = 0


def captions(labels, domains, domain_names, seed: int) -> list:
    """One caption per image: "a photo of the digit three." or, for half of them, "a sketch photo of the digit
    three." (the domain word tells the text encoder about styles, as web captions do)."""
    import numpy as np
    from .data import DIGIT_NAMES
    rng = np.random.default_rng(seed)
    out = []
    for y, d in zip(labels.tolist(), domains.tolist()):
        style = f"{domain_names[d]} " if rng.uniform() < 0.5 else ""
        out.append(f"a {style}photo of the digit {DIGIT_NAMES[y]}.")
    return out


def contrastive_loss(image_features: torch.Tensor, caption_features: torch.Tensor, scale: torch.Tensor,
                     caption_ids: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss against the bank of distinct captions: each image against every caption (its own is the
    positive), and each caption present in the batch against the batch's images (every image it describes is a
    positive, with equal weight)."""
    img = F.normalize(image_features, dim=-1)
    txt = F.normalize(caption_features, dim=-1)
    logits = scale * img @ txt.t()                                   # [B, captions]
    image_to_text = F.cross_entropy(logits, caption_ids)
    present = torch.unique(caption_ids)
    same = (present[:, None] == caption_ids[None, :]).float()        # [present captions, B]
    text_to_image = F.cross_entropy(logits.t()[present], same / same.sum(1, keepdim=True))
    return 0.5 * (image_to_text + text_to_image)


def pretrain(clip: ClipModel, samples, domain_names, recipe: PretrainRecipe, loop) -> ClipModel:
    """Train every weight of ``clip`` contrastively on (image, caption) pairs from ``samples`` (DomainSamples)."""
    import math
    from torch.utils.data import TensorDataset
    texts = captions(samples.labels, samples.domains, domain_names, recipe.seed)
    bank = sorted(set(texts))
    cap_id = torch.tensor([bank.index(t) for t in texts])
    bank_ids, bank_eos = clip.tokenize(bank)
    data = TensorDataset(samples.images, cap_id)
    loader = loop.loader(data, recipe.batch_size, shuffle=True, drop_last=True, seed=recipe.seed)
    for p in clip.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(clip.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    total = recipe.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, recipe.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    def loss_fn(model, batch):
        x, cid = batch
        bank_features = model.encode_text_embeddings(model.word_embeddings(bank_ids.to(x.device)), bank_eos.to(x.device))
        return contrastive_loss(model.encode_image(x), bank_features, model.logit_scale.clamp(max=100.0), cid)

    loop.seed(recipe.seed)
    clip = loop.fit(clip, opt, loader, loss_fn, epochs=recipe.epochs, desc="pretrain tiny CLIP",
                    after_step=lambda m: sched.step(), max_grad_norm=1.0)
    return freeze(clip)


def pretrained_tiny_clip(loop, config: TinyClipConfig = TinyClipConfig(), recipe: PretrainRecipe = PretrainRecipe(),
                         domains: Optional[Sequence[str]] = None, cache=None):
    """The tiny CLIP pre-trained on domain-mnist pairs, from the model cache when it was trained before.
    Returns (model, seconds spent training, cache key)."""
    from ..store import ModelCache
    from .data import MNIST_DOMAINS, pretraining_pairs
    domains = tuple(domains or MNIST_DOMAINS)
    key = {"role": "tiny-clip", "family": "vlm", "data": {"name": "domain-mnist", "domains": list(domains),
                                                          "version": 2},
           "model": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe)}
    cache = cache or ModelCache()
    samples = None

    def train(model):
        nonlocal samples
        samples = pretraining_pairs(domains)
        return pretrain(model, samples, domains, recipe, loop)

    model, seconds = cache.get_or_train(key, lambda: tiny_clip(config, recipe.seed), train)
    return freeze(model), seconds, key
