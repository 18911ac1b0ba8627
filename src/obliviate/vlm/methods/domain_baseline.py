"""Domain unlearning baseline: deep visual prompts trained with the memorize and forget losses only."""
from __future__ import annotations

import dataclasses

from .base import PromptMethod, register_method


@register_method
@dataclasses.dataclass
class DomainBaseline(PromptMethod):
    """Baseline of approximate domain unlearning: L = L_memorize + L_forget on a frozen CLIP.

    Paper: Kawamura et al., "Approximate Domain Unlearning for Vision-Language Models", NeurIPS 2025, arXiv 2510.08132
    (the "baseline" row of its ablation: prompts without InstaPG and without the Domain Disentangling Loss).

    L_memorize = cross-entropy of CLIP's class logits on memorize-domain images; L_forget = cross-entropy to the
    uniform distribution over classes on forget-domain images (the paper; the released code maximises the softmax
    entropy, the same target). Only the deep visual prompts (and an optional text context) train.

    Hyperparameters (paper defaults): epochs=50, lr=0.0025 (SGD), batch_size=128, momentum=0.9, weight_decay=5e-4,
    warmup_epochs=1 at warmup_lr=1e-5 then cosine decay, n_prompts=8 vision tokens, prompt_depth=9 layers (capped at
    the backbone's depth), n_ctx=0 (no learnable text context; the released code also learns deep text prompts).

    Example::

        method = create("domain-baseline", epochs=20)
        unlearned = method.unlearn(clip, make_task("domain-mnist", "domain:sketch"), Loop())
        logits = unlearned(images)                     # [B, classes]
    """
    name = "domain-baseline"
    paper = ("Kawamura et al., Approximate Domain Unlearning for Vision-Language Models, NeurIPS 2025 "
             "(arXiv 2510.08132): baseline")
    summary = "deep visual prompts with CE on memorize domains + CE to uniform on forget domains"
