"""Fixtures of the vision-language tests: a tiny random CLIP (no pre-training: the tests check properties, not
accuracy), the same model saved as a local Hugging Face folder, and a few-shot domain-mnist task."""
import pytest

TINY = dict(vision_width=32, vision_layers=2, text_width=32, text_layers=1, heads=2, embed_dim=32)


@pytest.fixture(scope="session")
def clip():
    from obliviate.vlm.models import TinyClipConfig, freeze, tiny_clip
    return freeze(tiny_clip(TinyClipConfig(**TINY), seed=0))


@pytest.fixture(scope="session")
def clip_dir(clip, tmp_path_factory):
    """The tiny CLIP saved with save_pretrained (config.json, model.safetensors, tokenizer files)."""
    path = tmp_path_factory.mktemp("hf-clip")
    clip.hf.save_pretrained(path)
    clip.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def task():
    from obliviate.vlm.data import make_task
    return make_task("domain-mnist", "domain:sketch", seed=0, shots=2)


@pytest.fixture(scope="session")
def class_task():
    from obliviate.vlm.data import make_task
    return make_task("domain-mnist", "class:3", seed=0, shots=2)


@pytest.fixture(autouse=True)
def _one_thread():
    # the tiny models here gain nothing from a second thread, and lose much when the cores are busy
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
