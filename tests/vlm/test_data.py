import numpy as np
import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.vlm.data import (MNIST_DOMAINS, DomainSamples, Source, few_shot, forget_flags, make_task,
                                parse_forget, render)


def test_render_domains():
    rng = np.random.default_rng(0)
    g = np.zeros((16, 16), dtype=np.float32)
    g[3:13, 5:11] = 1.0  # a wide vertical bar
    plain = render(g, "plain", rng)
    assert plain.shape == (3, 16, 16) and plain.dtype == np.float32
    np.testing.assert_allclose(render(g, "inverted", rng), 1.0 - plain)
    sketch = render(g, "sketch", rng)
    assert sketch[0, 8, 8] == 1.0 and sketch[0, 8, 5] < 0.5   # inside the bar: no edge; at its border: a dark line
    coloured = render(g, "coloured", rng)
    assert not np.allclose(coloured[0], coloured[1]) or not np.allclose(coloured[1], coloured[2])
    for d in MNIST_DOMAINS:
        x = render(g, d, rng)
        assert x.min() >= 0.0 and x.max() <= 1.0
    with pytest.raises(ObliviateError, match="unknown domain-mnist domain"):
        render(g, "cartoon", rng)


def test_few_shot_per_class_and_domain():
    labels = np.repeat(np.arange(3), 20)
    domains = np.tile(np.arange(2), 30)
    idx = few_shot(labels, domains, 4, seed=0)
    for c in range(3):
        for d in range(2):
            assert ((labels[idx] == c) & (domains[idx] == d)).sum() == 4
    assert np.array_equal(idx, few_shot(labels, domains, 4, seed=0))
    assert not np.array_equal(idx, few_shot(labels, domains, 4, seed=1))


def test_parse_forget_errors():
    names = ("real", "sketch", "clipart")
    assert parse_forget("domain:sketch,clipart", names, 5).names == ("sketch", "clipart")
    with pytest.raises(ObliviateError, match="unknown domain 'cartoon'.*real, sketch, clipart"):
        parse_forget("domain:cartoon", names, 5)
    with pytest.raises(ObliviateError, match="every domain"):
        parse_forget("domain:real,sketch,clipart", names, 5)
    with pytest.raises(ObliviateError, match="malformed"):
        parse_forget("sketch", names, 5)
    with pytest.raises(ObliviateError, match="unknown forget-spec kind"):
        parse_forget("random:0.1", names, 5)
    with pytest.raises(ObliviateError, match="class 7 does not exist"):
        parse_forget("class:7", names, 5)
    with pytest.raises(ObliviateError, match="listed twice"):
        parse_forget("domain:sketch,sketch", names, 5)


def test_domain_mnist_task(task):
    assert task.domain_names == MNIST_DOMAINS and task.num_classes == 10
    assert len(task.train) == 10 * 6 * 2   # shots per (class, domain)
    sketch = MNIST_DOMAINS.index("sketch")
    assert torch.equal(task.train.forget, task.train.domains == sketch)
    assert torch.equal(task.test.forget, task.test.domains == sketch)
    assert task.forget_domains == (sketch,)
    x, y, d, f = task.train.__getitems__([0, 1])
    assert x.shape == (2, 3, 16, 16) and y.dtype == torch.long and f.dtype == torch.bool


def test_class_forget_flags():
    s = DomainSamples(torch.zeros(4, 3, 2, 2), [0, 1, 2, 1], [0, 0, 1, 1])
    assert forget_flags(s, parse_forget("class:1", ("a", "b"), 3), ("a", "b")).tolist() == [False, True, False, True]


def test_make_task_checks_spec_first():
    src = Source("toy", DomainSamples(torch.zeros(4, 3, 2, 2), [0, 1, 0, 1], [0, 0, 1, 1]),
                 DomainSamples(torch.zeros(2, 3, 2, 2), [0, 1], [0, 1]), ("a", "b"), ("x", "y"))
    with pytest.raises(ObliviateError, match="unknown domain 'z'"):
        make_task(src, "domain:z")
    t = make_task(src, "domain:y", shots=1)
    assert t.train.forget.tolist() == [False, False, True, True]
