"""Fixtures of the language-model method tests: a tiny GPT-2 built on a test module's forget and retain pairs
(``FORGET``, ``RETAIN``), fine-tuned on them first when the module sets ``LM_RECIPE``, and the pairs encoded as
``UnlearnData``. The Loop is the session's (tests/conftest.py)."""
import pytest


def tiny_lm(forget, retain, extra_texts=(), recipe=None):
    """A 2-layer, 32-wide GPT-2 and its byte-level BPE tokenizer (300 tokens, trained on the pairs and
    ``extra_texts``); with a ``recipe``, fine-tuned on forget + retain (a target that knows both)."""
    from obliviate.loop import Loop
    from obliviate.text.models import build_tokenizer, tiny_causal_lm
    from obliviate.text.train import finetune
    tok = build_tokenizer([p + c for p, c in forget + retain] * 3 + list(extra_texts), vocab_size=300)
    model = tiny_causal_lm(tok, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=0)
    if recipe is not None:
        model = finetune(model, tok, forget + retain, recipe, Loop(cpu=True, progress=False))
    return model, tok


@pytest.fixture(scope="module")
def lm(request):
    """``tiny_lm`` of the module's FORGET and RETAIN, with its LM_TEXTS and LM_RECIPE where it sets them."""
    module = request.module
    return tiny_lm(module.FORGET, module.RETAIN, getattr(module, "LM_TEXTS", ()), getattr(module, "LM_RECIPE", None))


@pytest.fixture(scope="module")
def data(lm, request):
    from obliviate.text.methods import UnlearnData
    from obliviate.text.train import encode
    _, tok = lm
    return UnlearnData(forget=encode(tok, request.module.FORGET, 64), retain=encode(tok, request.module.RETAIN, 64),
                       tokenizer=tok, seed=0)
