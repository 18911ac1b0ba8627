"""ECO prompts: a classifier flags prompts about the forget target; their token embeddings are corrupted."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from ...errors import ObliviateError
from ..prompt_classifier import EMBEDDERS, LMEmbedder, MiniLMEmbedder, PromptClassifier, split_heldout
from ..eval.scoring import max_positions
from ..train import IGNORE
from ..wrapped import WrappedLM, lm_step
from .base import Method, register_method

CORRUPTIONS = ("noise", "zero", "flip")


def corrupt(emb: torch.Tensor, where: torch.Tensor, kind: str, sigma: float = 0.0, noise: Optional[torch.Tensor] = None,
            dims: int = 0, top_k: int = 0) -> torch.Tensor:
    """Corrupted token embeddings ([batch, length, d]) at the positions ``where`` ([batch, length] bool).

    noise: add ``sigma * noise`` ([batch, length, d], standard normal) to the first ``dims`` dimensions (0: all);
    zero: set each token's ``top_k`` largest-magnitude dimensions to 0; flip: negate them."""
    if kind == "noise":
        d = dims or emb.shape[-1]
        delta = torch.zeros_like(emb)
        delta[..., :d] = sigma * noise[..., :d].to(emb.dtype)
        changed = emb + delta
    else:
        top = emb.abs().topk(min(top_k, emb.shape[-1]), dim=-1).indices
        factor = torch.ones_like(emb).scatter(-1, top, 0.0 if kind == "zero" else -1.0)
        changed = emb * factor
    return torch.where(where.unsqueeze(-1), changed, emb)


class EcoLM(WrappedLM):
    """The target seen through ECO: prompts the classifier flags reach the model with corrupted token embeddings
    (a forward hook on the embedding layer); everything else, and every generated token, passes unchanged."""

    def __init__(self, model, tokenizer, classifier: PromptClassifier, kind: str, sigma: float, dims: int,
                 top_k: int, seed: int):
        super().__init__(model)
        self.tokenizer, self.classifier = tokenizer, classifier
        self.kind, self.sigma, self.dims, self.top_k = kind, sigma, dims, top_k
        width = model.get_input_embeddings().weight.shape[1]
        # one fixed standard-normal draw per position: the same prompt is corrupted the same way in every batch
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("noise", torch.randn(max_positions(model) or 4096, width, generator=g), persistent=False)
        self.force = False  # flag every prompt (the sigma search)

    def prompt_flags(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.force:
            return torch.ones(len(ids), dtype=torch.bool, device=ids.device)
        texts = [self.tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True) for row, m in zip(ids, mask)]
        return torch.as_tensor(self.classifier.flags(texts), device=ids.device)

    @contextlib.contextmanager
    def corrupting(self, where: torch.Tensor, position_ids: torch.Tensor):
        def hook(module, inputs, output):
            noise = self.noise[position_ids.clamp(max=len(self.noise) - 1)]
            return corrupt(output, where, self.kind, self.sigma, noise, self.dims, self.top_k)

        handle = self.model.get_input_embeddings().register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def step(self, ids, mask, position_ids, state, prompt, cache):
        if not prompt:  # generated tokens are not corrupted
            return lm_step(self.model, ids, mask, position_ids, state, cache)
        where = mask.bool() & self.prompt_flags(ids, mask)[:, None]
        if not where.any():
            return lm_step(self.model, ids, mask, position_ids, state, cache)
        with self.corrupting(where, position_ids):
            return lm_step(self.model, ids, mask, position_ids, state, cache)

    # ------------------------------------------------------------------------------------ evaluation extras

    def extra_metrics(self, evaluator, tokenizer) -> dict:
        """The classifier's error rates on the evaluated prompts, and ECO's inference overhead per token."""
        from ..data.tasks import qa_prompt
        retain = [qa_prompt(q.question) for q in evaluator.retain_qa] + [p + c for p, c in evaluator.retain]
        forget = [qa_prompt(q.question) for q in evaluator.forget_qa] + [p for p, _ in evaluator.verbmem] + \
            list(evaluator.forget_texts)
        paraphrased = [q.paraphrased for q in evaluator.forget_qa if q.paraphrased and q.paraphrased != q.answer]
        out = {"eco_fpr_retain": self.classifier.rate(retain), "eco_fpr_holdout":
               self.classifier.rate(evaluator.holdout_texts), "eco_recall_forget": self.classifier.rate(forget),
               "eco_sigma": self.sigma, "eco_threshold": self.classifier.threshold}
        if paraphrased:
            out["eco_recall_paraphrased"] = self.classifier.rate(paraphrased)
        out.update(self.overhead(list(evaluator.forget_texts) + [p + c for p, c in evaluator.retain], tokenizer,
                                 evaluator.batch_size))
        return out

    @torch.no_grad()
    def overhead(self, texts: List[str], tokenizer, batch_size: int, repeats: int = 3) -> dict:
        """Milliseconds per token of a forward pass through ECO and through the plain model (medians of
        ``repeats``), with the classifier's decisions not memoised."""
        from ..eval.scoring import _right_padded
        limit = max_positions(self.model) or 1024
        seqs = [ids[:limit] for ids in tokenizer(texts, add_special_tokens=True)["input_ids"] if ids]
        if not seqs:
            return {}
        device = next(self.model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        batches = [_right_padded(seqs[i:i + batch_size], pad, device) for i in range(0, len(seqs), batch_size)]
        n_tokens = sum(len(s) for s in seqs)
        self.eval()

        def timed(fn):
            times = []
            for _ in range(repeats):
                self.classifier._memo.clear()
                start = time.perf_counter()
                for ids, mask in batches:
                    fn(ids, mask)
                times.append(time.perf_counter() - start)
            return 1000 * float(np.median(times)) / n_tokens

        plain = timed(lambda ids, mask: self.model(input_ids=ids, attention_mask=mask))
        eco = timed(lambda ids, mask: self(input_ids=ids, attention_mask=mask))
        return {"eco_ms_per_token": eco, "plain_ms_per_token": plain, "eco_overhead_ms_per_token": eco - plain}


# --------------------------------------------------------------------------------------------- data and search

def _prompt_answer(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> Tuple[List[int], List[int]]:
    """A training example as (prompt ids, answer ids): the completion is the answer; a document (trained from its
    second token on) is cut in half."""
    n = int(mask.sum())
    trained = [j for j in range(1, n) if labels[j] != IGNORE]
    first = trained[0] if trained else n // 2
    if first <= 1:
        first = max(1, n // 2)
    return ids[:first].tolist(), ids[first:n].tolist()


def example_texts(tokenizer, dataset) -> List[List[str]]:
    """For each example, the texts a prompt about it may take: its prompt (or a document's first half) and the whole
    text (scoring reads prompt + answer in one pass)."""
    out = []
    for ids, mask, labels in zip(dataset.input_ids, dataset.attention_mask, dataset.labels):
        prompt, answer = _prompt_answer(ids, mask, labels)
        texts = [tokenizer.decode(prompt, skip_special_tokens=True), tokenizer.decode(prompt + answer,
                                                                                     skip_special_tokens=True)]
        out.append([t for t in texts if t.strip()])
    return out


def choice_items(dataset, n_options: int, limit: int, seed: int):
    """Multiple-choice items from the forget set: each example's prompt with its own answer (index 0) and the answers
    of ``n_options - 1`` other forget examples."""
    pairs = [_prompt_answer(*row) for row in zip(dataset.input_ids, dataset.attention_mask, dataset.labels)]
    if len(pairs) < n_options:
        raise ObliviateError(f"eco: the sigma search needs at least n_options={n_options} forget examples")
    rng = np.random.default_rng(seed)
    items = []
    for i in rng.permutation(len(pairs))[:limit]:
        others = [j for j in rng.permutation(len(pairs)) if j != i][:n_options - 1]
        items.append((pairs[i][0], [pairs[i][1]] + [pairs[j][1] for j in others]))
    return items


@torch.no_grad()
def choice_score(model, items, pad: int, limit: Optional[int], batch_size: int = 32) -> float:
    """Mean probability of the right option, options compared by their mean token log-probability (softmax)."""
    from ..eval.scoring import _right_padded
    seqs, spans = [], []
    for prompt, options in items:
        for answer in options:
            seq = (prompt + answer)[-limit:] if limit else prompt + answer
            start = len(seq) - len(answer)
            seqs.append(seq)
            spans.append((start, len(seq)))
    device = next(model.parameters()).device
    means = []
    for i in range(0, len(seqs), batch_size):
        ids, mask = _right_padded(seqs[i:i + batch_size], pad, device)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for r, (a, b) in enumerate(spans[i:i + batch_size]):
            a = max(a, 1)
            tok = ids[r, a:b]
            means.append(logp[r, a - 1:b - 1].gather(-1, tok[:, None]).mean().item())
    means = torch.tensor(means).view(len(items), -1)
    return float(torch.softmax(means, -1)[:, 0].mean())


def zeroth_order_search(f, sigma: float, steps: int, eps: float, lr: float) -> Tuple[float, list]:
    """sigma <- sigma - lr * (f(sigma + eps) - f(sigma - eps)) / (2 eps), kept >= 0; returns (sigma, path)."""
    path = []
    for _ in range(steps):
        g = (f(sigma + eps) - f(max(sigma - eps, 0.0))) / (sigma + eps - max(sigma - eps, 0.0))
        sigma = max(0.0, sigma - lr * g)
        path.append(sigma)
    return sigma, path


@register_method
@dataclass
class ECO(Method):
    """ECO prompts (Liu, Wang, Flanigan and Liu, "Large Language Model Unlearning via Embedding-Corrupted Prompts",
    NeurIPS 2024, arXiv 2406.07933).

    A prompt classifier -- logistic regression on sentence embeddings (``classifier=minilm``: all-MiniLM-L6-v2 from the
    offline package; ``lm``: the target's mean last hidden state) trained on forget vs retain prompts, its threshold
    set on held-out prompts (``heldout_fraction``) for ``target_fpr`` on retain prompts -- decides whether a prompt is
    about the forget target. Flagged prompts reach the model with corrupted token embeddings (a forward hook on the
    embedding layer): ``noise`` adds sigma * N(0, 1) to the first ``dims`` dimensions (0: all), ``zero`` zeroes and
    ``flip`` negates each token's ``top_k`` largest-magnitude dimensions. Generated tokens are not corrupted, and no
    weight changes: the method returns a view of the target.

    sigma is found by the paper's zeroth-order search, sigma <- sigma - search_lr * (f(sigma + eps) -
    f(sigma - eps)) / 2 eps, where f = |score - chance| and score is the forget set's multiple-choice score (each
    forget prompt with its own answer and ``n_options - 1`` answers of other forget examples; the probability of the
    right one, options compared by mean token log-probability), chance = 1 / n_options.

    Hyperparameters: classifier="minilm", target_fpr=0.01, heldout_fraction=0.25, C=1.0 (logistic regression),
    corruption="noise", sigma=1.0 (the search's start), dims=0, top_k=8, search_steps=10, search_eps=0.1,
    search_lr=5.0, n_options=4, search_items=32, seed=0.

    Differs from the paper: its classifier is a fine-tuned RoBERTa and its threshold a fixed probability; here
    logistic regression on frozen embeddings, offline, with a threshold set for a false-positive rate. The noise scale
    is measured in units of the embedding table's standard deviation, so one sigma suits models of any width; the
    noise is one fixed draw per position. The multiple-choice score is smooth (expected accuracy) so that the
    finite differences of the search are informative.
    """

    name = "eco"
    paper = ("Liu et al., Large Language Model Unlearning via Embedding-Corrupted Prompts, NeurIPS 2024 "
             "(arXiv 2406.07933)")
    summary = "flag forget prompts with a classifier; corrupt their token embeddings (no weight change)"

    classifier: str = "minilm"
    target_fpr: float = 0.01
    heldout_fraction: float = 0.25
    C: float = 1.0
    corruption: str = "noise"
    sigma: float = 1.0
    dims: int = 0
    top_k: int = 8
    search_steps: int = 10
    search_eps: float = 0.1
    search_lr: float = 5.0
    n_options: int = 4
    search_items: int = 32
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.classifier not in EMBEDDERS:
            raise ObliviateError(f"eco: classifier must be one of {', '.join(EMBEDDERS)}, not {self.classifier!r}")
        if self.corruption not in CORRUPTIONS:
            raise ObliviateError(f"eco: corruption must be one of {', '.join(CORRUPTIONS)}, not {self.corruption!r}")
        if not 0.0 <= self.target_fpr < 1.0 or not 0.0 < self.heldout_fraction < 1.0 or self.C <= 0:
            raise ObliviateError("eco: target_fpr must lie in [0, 1), heldout_fraction in (0, 1), C > 0")
        if self.sigma < 0 or self.dims < 0 or self.top_k < 0 or self.search_steps < 1 or self.search_eps <= 0 \
                or self.n_options < 2 or self.search_items < 1:
            raise ObliviateError("eco: sigma, dims, top_k >= 0; search_steps >= 1; search_eps > 0; n_options >= 2; "
                                 "search_items >= 1")

    def fit_classifier(self, model, data, loop) -> PromptClassifier:
        rng = np.random.default_rng(self.seed)
        forget, retain = example_texts(data.tokenizer, data.forget), example_texts(data.tokenizer, data.retain)
        f_train, f_held = split_heldout(forget, self.heldout_fraction, rng)
        r_train, r_held = split_heldout(retain, self.heldout_fraction, rng)
        flat = lambda groups: [t for g in groups for t in g]  # noqa: E731
        embed = MiniLMEmbedder(loop.device) if self.classifier == "minilm" else LMEmbedder(model, data.tokenizer)
        return PromptClassifier(embed, self.C, self.seed).fit(flat(f_train), flat(r_train), flat(f_held),
                                                              flat(r_held), self.target_fpr)

    def unlearn(self, model, data, loop):
        for p in model.parameters():  # the target is only read
            p.requires_grad_(False)
        model = loop.place(model).eval()
        classifier = self.fit_classifier(model, data, loop)
        scale = float(model.get_input_embeddings().weight.float().std())
        view = EcoLM(model, data.tokenizer, classifier, self.corruption, self.sigma * scale, self.dims, self.top_k,
                     self.seed)
        view = loop.place(view)
        if self.corruption == "noise":
            view.sigma = scale * self.search_sigma(view, data, scale)
        return view

    def search_sigma(self, view: EcoLM, data, scale: float) -> float:
        """The paper's zeroth-order search for sigma (in units of the embedding scale) on the forget set."""
        tok = data.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        items = choice_items(data.forget, self.n_options, self.search_items, self.seed)
        limit = max_positions(view.model)

        def f(s: float) -> float:
            view.sigma = s * scale
            return abs(choice_score(view, items, pad, limit) - 1.0 / self.n_options)

        view.force = True
        try:
            sigma, _ = zeroth_order_search(f, self.sigma, self.search_steps, self.search_eps, self.search_lr)
        finally:
            view.force = False
        return sigma

