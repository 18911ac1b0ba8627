import json

import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.vlm.models import (ClipModel, PretrainRecipe, TinyClipConfig, contrastive_loss, load_clip, pretrain,
                                  tiny_clip)
from tests.vlm.conftest import TINY


def test_text_and_image_features_match_huggingface(clip):
    """Our layer-by-layer path gives what CLIPModel's own forward gives (an independent implementation)."""
    texts = ["a photo of the digit three.", "a sketch photo of the digit seven."]
    ids, eos = clip.tokenize(texts)
    with torch.no_grad():
        ours = clip.encode_text(texts)
        theirs = clip.hf.get_text_features(input_ids=ids, attention_mask=(ids != 0).long())
        theirs = getattr(theirs, "pooler_output", theirs)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
        x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        pixels = (x - clip.mean) / clip.std
        img = clip.hf.get_image_features(pixel_values=pixels)
        torch.testing.assert_close(clip.encode_image(x), getattr(img, "pooler_output", img), atol=1e-5, rtol=1e-4)
    assert eos.tolist() == [int((ids[i] != 0).sum()) - 1 for i in range(2)]


def test_load_clip_from_local_folder(clip, clip_dir):
    loaded = load_clip(clip_dir)
    assert isinstance(loaded, ClipModel)
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(["a photo of the digit one."]),
                                   clip.encode_text(["a photo of the digit one."]))


def test_load_clip_reads_preprocessor_config(clip_dir, tmp_path):
    import shutil
    d = tmp_path / "clip"
    shutil.copytree(clip_dir, d)
    (d / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [1, 1, 1],
                                                            "crop_size": {"height": 16, "width": 16}}))
    m = load_clip(d)
    assert m.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3]) and m.image_size == 16


def test_load_clip_errors(tmp_path, clip_dir):
    with pytest.raises(ObliviateError, match="config.json"):
        load_clip(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ObliviateError, match="not 'clip'"):
        load_clip(tmp_path)


def test_images_are_resized_to_the_model(clip):
    with torch.no_grad():
        assert clip.encode_image(torch.rand(2, 3, 24, 24)).shape == (2, 32)


def test_contrastive_loss_prefers_matching_pairs():
    img = torch.eye(3)
    bank = torch.eye(3)
    right = contrastive_loss(img, bank, torch.tensor(10.0), torch.tensor([0, 1, 2]))
    wrong = contrastive_loss(img, bank, torch.tensor(10.0), torch.tensor([1, 2, 0]))
    assert right < wrong


def test_pretraining_lowers_the_contrastive_loss(loop):
    from obliviate.vlm.data import MNIST_DOMAINS, DomainSamples, _digits16, render_all
    from obliviate.vlm.models import captions
    gray, labels = _digits16()
    x, y, d = render_all(gray[:40], labels[:40], MNIST_DOMAINS, seed=0)
    samples = DomainSamples(torch.from_numpy(x), y, d)
    model = tiny_clip(TinyClipConfig(**TINY), seed=0)

    def loss(m):
        texts = captions(samples.labels, samples.domains, MNIST_DOMAINS, 0)
        bank = sorted(set(texts))
        with torch.no_grad():
            return contrastive_loss(m.encode_image(samples.images), m.encode_text(bank), m.logit_scale,
                                    torch.tensor([bank.index(t) for t in texts])).item()

    before = loss(model)
    model = pretrain(model, samples, MNIST_DOMAINS, PretrainRecipe(epochs=3, batch_size=40, warmup_steps=1), loop)
    assert loss(model) < before
    assert not any(p.requires_grad for p in model.parameters())
