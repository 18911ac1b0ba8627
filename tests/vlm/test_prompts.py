import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.vlm.evaluate import zero_shot
from obliviate.vlm.prompts import InstaPG, PromptedClip


def test_zero_prompts_is_zero_shot_clip(clip, task):
    import torch.nn.functional as F
    model = zero_shot(clip, task)
    x = task.test.images[:4]
    with torch.no_grad():
        img = F.normalize(clip.encode_image(x), dim=-1)
        txt = F.normalize(clip.encode_text([task.template.format(n) for n in task.class_names]), dim=-1)
        torch.testing.assert_close(model(x), clip.logit_scale * img @ txt.t())


def test_deep_prompts_reach_every_prompted_layer(clip, task):
    model = PromptedClip(clip, task.class_names, task.template, n_prompts=3, depth=9)
    assert model.depth == clip.num_vision_layers          # capped at the backbone's depth
    model(task.test.images[:4]).sum().backward()
    grads = model.visual_prompts.grad
    assert grads.shape == (model.depth, 3, clip.vision_width)
    assert all(grads[i].abs().sum() > 0 for i in range(model.depth))
    assert all(p.grad is None for p in clip.parameters())


def test_prompts_of_later_layers_replace_earlier_ones(clip, task):
    """Layer 1 sees one set of prompts: those of layer 0 were replaced, not kept beside the new ones."""
    model = PromptedClip(clip, task.class_names, task.template, n_prompts=2, depth=2)
    seen = []
    handle = clip.hf.vision_model.encoder.layers[1].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    with torch.no_grad():
        model(task.test.images[:2])
    handle.remove()
    assert seen[0][1] == 1 + 16 + 2                        # class + patches + one set of prompts


def test_text_context_inserted_after_start_token(clip, task):
    model = PromptedClip(clip, task.class_names, task.template, n_prompts=0, n_ctx=2)
    with torch.no_grad():
        model.text_context.zero_()
        zero = model.text_features()
        model.text_context.normal_()
        assert not torch.allclose(zero, model.text_features())
    with pytest.raises(ObliviateError, match="longer than"):
        PromptedClip(clip, task.class_names, task.template, n_ctx=40)


def test_instapg_prompts_depend_on_the_image():
    torch.manual_seed(0)
    gen = InstaPG(16, 2)
    prompts = torch.randn(1, 3, 16).expand(2, -1, -1)
    patches = torch.randn(2, 5, 16)
    out = gen(prompts, patches)
    assert out.shape == (2, 3, 16)
    assert not torch.allclose(out[0], out[1])             # same learnable prompts, different images


def test_instapg_layer_must_be_prompted(clip, task):
    with pytest.raises(ObliviateError, match="not a prompted layer"):
        PromptedClip(clip, task.class_names, task.template, n_prompts=2, depth=1, instapg_layer=1)
