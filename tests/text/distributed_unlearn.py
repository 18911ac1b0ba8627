"""Tiny unlearning jobs for tests/text/test_distributed.py: run plainly or under `torchrun --nproc_per_node 2`.

Usage: python distributed_unlearn.py OUT_DIR. Runs GA, GradDiff, NPO and RMU on forget and retain answers of UNEQUAL
lengths, with the model's dropout left at its default (the methods turn it off while unlearning). The global batch (4)
is split evenly over the processes; token means run over the global batch's tokens. The main process writes each
method's unlearned weights and the number of processes it saw to OUT_DIR/<method>.safetensors.
"""
import json
import sys
from pathlib import Path

import torch

METHODS = {"ga": {}, "graddiff": {}, "npo": {},
           "rmu": {"layer": 1, "update_layers": "1", "steering_coeff": 5.0, "alpha": 10.0, "max_batches": 2}}


def main(out: str) -> None:
    torch.set_num_threads(1)
    from safetensors.torch import save_file

    from obliviate.loop import Loop
    from obliviate.text.methods import UnlearnData, create
    from obliviate.text.models import build_tokenizer, tiny_causal_lm
    from obliviate.text.train import encode

    filler = ["", " of the northern coast", " near the old harbour by the sea", " in spring"]
    forget = [(f"Question: Where was author {i} born?\nAnswer:", f" Author {i} was born in city {i}{filler[i % 4]}.")
              for i in range(8)]
    retain = [(f"Question: What does writer {i} write?\nAnswer:", f" Writer {i} writes genre {i}{filler[(i + 1) % 4]}.")
              for i in range(8)]
    tok = build_tokenizer([p + c for p, c in forget + retain], vocab_size=300)
    base = tiny_causal_lm(tok, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=0)
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in base.modules())
    loop = Loop(cpu=True, progress=False)
    data = UnlearnData(forget=encode(tok, forget, 64), retain=encode(tok, retain, 64), tokenizer=tok, seed=0)
    lengths = (data.forget.labels[:, 1:] != -100).sum(1)
    assert len(set(lengths.tolist())) > 1
    initial = {k: v.detach().clone() for k, v in base.state_dict().items()}
    for name, extra in METHODS.items():
        import copy
        model = copy.deepcopy(base).train()
        method = create(name, **{"lr": 1e-3, "epochs": 2, "batch_size": 4, **extra})
        model = method.unlearn(model, data, loop)
        if loop.is_main_process:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            state.pop("lm_head.weight", None)  # tied to the token embedding
            moved = max((state[k] - initial[k]).abs().max().item() for k in state)
            save_file(state, str(Path(out) / f"{name}.safetensors"),
                      metadata={"num_processes": json.dumps(loop.num_processes), "moved": json.dumps(moved)})
        loop.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
