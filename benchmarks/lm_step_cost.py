"""Step cost of NPO relative to plain fine-tuning, and evaluation throughput, on a tiny GPT-2.

A naive NPO step is a forward-backward pass of the policy plus a forward pass of the frozen reference; a fine-tuning
step is the forward-backward pass alone, on the same batch. obliviate's NPO computes the reference log-likelihoods
once before training (the reference and the forget set never change), so its step is the policy pass alone; both are
timed. Target: NPO / fine-tune <= 1.4. Also reports tokens/s of teacher-
forced scoring (text log-probabilities) and of greedy generation. Every figure is the median over ``--repeats`` timed
blocks of ``--steps`` steps, after a warm-up.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lm_step_cost.py --threads 2
"""
from __future__ import annotations

import argparse
import importlib
import copy
import json
import platform
import statistics
import time

import torch


def build(args):
    from obliviate.text.data.tasks import LMTask, make_task
    from obliviate.text.models import build_tokenizer, tiny_causal_lm
    from obliviate.text.train import encode
    task = make_task("plays", "forget", seed=0)
    texts = LMTask.texts(task.target_examples + task.holdout_examples)
    tok = build_tokenizer(texts, vocab_size=args.vocab)
    model = tiny_causal_lm(tok, n_layer=args.layers, n_embd=args.width, n_head=args.heads, n_positions=256, seed=0)
    data = encode(tok, task.retain_examples, max_length=args.seq)
    idx = list(range(min(args.batch, len(data))))
    return model, tok, data.__getitems__(idx), task


def time_steps(step, steps: int, repeats: int) -> list:
    step()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        out.append((time.perf_counter() - start) / steps)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--width", type=int, default=128, help="n_embd of the tiny GPT-2")
    p.add_argument("--layers", type=int, default=2, help="n_layer")
    p.add_argument("--heads", type=int, default=4, help="n_head")
    p.add_argument("--vocab", type=int, default=1024, help="BPE vocabulary size")
    p.add_argument("--batch", type=int, default=16, help="sequences per step")
    p.add_argument("--seq", type=int, default=128, help="maximum tokens per sequence")
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks (the median is reported)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    importlib.import_module("obliviate.text.eval.evaluate")  # the evaluation stack loads before any timing
    from obliviate.text.methods import create
    from obliviate.text.eval.scoring import greedy_generate, text_logprobs
    from obliviate.text.train import nll

    model, tok, batch, task = build(args)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    npo = create("npo")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(loss_fn):
        def run():
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    from obliviate.text.train import sequence_logprob
    with torch.no_grad():
        cached = (*batch, sequence_logprob(reference, *batch))  # what NPO computes once before training
    finetune = time_steps(step(lambda: nll(model, *batch)), args.steps, args.repeats)
    npo_steps = time_steps(step(lambda: npo.forget_loss(model, batch, reference)), args.steps, args.repeats)
    npo_cached = time_steps(step(lambda: npo.forget_loss(model, cached, reference)), args.steps, args.repeats)
    ratio = statistics.median(npo_steps) / statistics.median(finetune)
    ratio_cached = statistics.median(npo_cached) / statistics.median(finetune)

    model.eval()
    texts = [c for _, c in task.retain_examples]
    n_tokens = sum(len(t) - 1 for t in tok(texts, add_special_tokens=True)["input_ids"])
    score = time_steps(lambda: text_logprobs(model, tok, texts, batch_size=16), 1, args.repeats)
    prompts = [c[:60] for c in texts[:16]]
    new_tokens = 32
    gen = time_steps(lambda: greedy_generate(model, tok, prompts, max_new_tokens=new_tokens, batch_size=16), 1,
                     args.repeats)
    generated = greedy_generate(model, tok, prompts, max_new_tokens=new_tokens, batch_size=16)
    gen_tokens = sum(len(ids) for ids in tok(generated, add_special_tokens=False)["input_ids"])
    result = {
        "finetune_step_s": statistics.median(finetune),
        "npo_step_with_reference_forward_s": statistics.median(npo_steps),
        "npo_step_cached_reference_s": statistics.median(npo_cached),
        "npo_with_reference_forward_over_finetune": ratio, "npo_cached_over_finetune": ratio_cached,
        "target_ratio": 1.4, "meets_target": ratio_cached <= 1.4,
        "scoring_tokens_per_s": n_tokens / statistics.median(score),
        "generation_tokens_per_s": gen_tokens / statistics.median(gen),
        "tokens_per_step": int(batch[1].sum()), "parameters": sum(p.numel() for p in model.parameters()),
        "settings": vars(args),
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "transformers": __import__("transformers").__version__},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
