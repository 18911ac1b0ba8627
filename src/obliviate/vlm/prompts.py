"""Prompt learning on a frozen CLIP: deep visual prompts, an optional learnable text context, and InstaPG.

- Deep visual prompts (Jia et al., Visual Prompt Tuning, ECCV 2022; as used by ADU): ``n_prompts`` learnable tokens are
  appended to the patch tokens before layer 0 and replaced by fresh learnable tokens before each of the first
  ``depth`` layers; after that they travel through the remaining layers unchanged by us.
- Text context (CoOp, Zhou et al., IJCV 2022): ``n_ctx`` learnable word embeddings inserted after the start token of
  every class prompt "a photo of a [CLASS].".
- InstaPG (Kawamura et al., NeurIPS 2025): at one prompted layer, a cross-attention block whose queries are that
  layer's prompt tokens and whose keys and values are the image's patch tokens (LayerNorm, multi-head attention with
  residual, LayerNorm, MLP 4x with residual); its output replaces that layer's prompts, so prompts depend on the image.

Only the prompts, the text context and InstaPG train; every backbone weight stays frozen (``requires_grad`` False, the
backbone held in eval mode).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ObliviateError
from .models import ClipModel


class InstaPG(nn.Module):
    """Instance-wise prompt generator: prompts [B, P, d] attend to patch tokens [B, N, d]; returns new prompts."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, prompts: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(patches)
        h = prompts + self.attn(self.norm_q(prompts), kv, kv, need_weights=False)[0]
        return h + self.mlp(self.norm_mlp(h))


class PromptedClip(nn.Module):
    """A frozen :class:`ClipModel` with learnable prompts; ``forward(images)`` gives class logits [B, C].

    Args:
        clip: the backbone (frozen here).
        class_names, template: class prompts ``template.format(name)``.
        n_prompts: visual prompt tokens per layer (paper: 8). depth: prompted layers (paper: 9 of ViT-B/16's 12;
            capped at the backbone's depth). n_ctx: learnable text context tokens (0: none).
        instapg_layer: the prompted layer whose prompts InstaPG generates (None: no InstaPG).
        init_std: standard deviation of the prompts' normal initialisation.
    """

    def __init__(self, clip: ClipModel, class_names: Sequence[str], template: str, n_prompts: int = 8,
                 depth: int = 9, n_ctx: int = 0, instapg_layer: Optional[int] = None, init_std: float = 0.02):
        super().__init__()
        if n_prompts < 0 or depth < 0 or n_ctx < 0:
            raise ObliviateError("n_prompts, depth and n_ctx must be non-negative")
        self.clip = clip
        for p in clip.parameters():
            p.requires_grad_(False)
        self.depth = min(depth, clip.num_vision_layers) if n_prompts else 0
        self.n_prompts = n_prompts
        width = clip.vision_width
        self.visual_prompts = nn.Parameter(torch.randn(self.depth, n_prompts, width) * init_std)
        if instapg_layer is not None and not 0 <= instapg_layer < self.depth:
            raise ObliviateError(f"instapg_layer {instapg_layer} is not a prompted layer (0..{self.depth - 1})")
        self.instapg_layer = instapg_layer
        heads = clip.hf.config.vision_config.num_attention_heads
        self.instapg = InstaPG(width, heads) if instapg_layer is not None else None
        self.n_ctx = n_ctx
        self.text_context = nn.Parameter(torch.randn(n_ctx, clip.text_width) * init_std) if n_ctx else None
        ids, eos = clip.tokenize([template.format(n) for n in class_names])
        self.register_buffer("class_ids", ids, persistent=False)
        self.register_buffer("class_eos", eos, persistent=False)
        if n_ctx and ids.shape[1] + n_ctx > clip.max_text_length:
            raise ObliviateError(f"n_ctx={n_ctx} makes the class prompts longer than the text encoder's "
                                 f"{clip.max_text_length} tokens")
        self._frozen_text = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # the backbone never leaves eval mode
        return self

    # ---- text side
    def text_features(self) -> torch.Tensor:
        """Normalised class text embeddings [C, dim]; computed once when there is no learnable context."""
        if self.text_context is None:
            if self._frozen_text is None or self._frozen_text.device != self.class_ids.device:
                with torch.no_grad():
                    self._frozen_text = F.normalize(
                        self.clip.encode_text_embeddings(self.clip.word_embeddings(self.class_ids), self.class_eos), dim=-1)
            return self._frozen_text
        return F.normalize(self.encode_with_context(self.text_context), dim=-1)

    def encode_with_context(self, context: torch.Tensor) -> torch.Tensor:
        """Class prompts with ``context`` [n_ctx, width] inserted after the start token -> text embeddings [C, dim]."""
        emb = self.clip.word_embeddings(self.class_ids)
        c = len(emb)
        emb = torch.cat([emb[:, :1], context[None].expand(c, -1, -1).to(emb.dtype), emb[:, 1:]], dim=1)
        return self.clip.encode_text_embeddings(emb, self.class_eos + len(context))

    # ---- image side
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings [B, dim] with the prompts in place."""
        h = self.clip.vision_tokens(images)
        n_tokens = h.shape[1]  # class token + patch tokens; prompts follow them
        for i in range(self.clip.num_vision_layers):
            if i < self.depth:  # append (layer 0) or replace (later layers) the prompt tokens
                prompts = self.visual_prompts[i][None].expand(len(h), -1, -1).to(h.dtype)
                if i == self.instapg_layer:
                    prompts = self.instapg(prompts, h[:, 1:n_tokens])
                h = torch.cat([h[:, :n_tokens], prompts], dim=1)
            h = self.clip.vision_layer(i, h)
        return F.normalize(self.clip.image_head(h), dim=-1)

    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.clip.logit_scale * image_features @ self.text_features().t()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.image_features(images))

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]
