import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from obliviate.vlm.losses import domain_mmd2, median_bandwidth, mmd2, uniform_target_loss


def test_mmd2_against_hand_computed_value():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    sigma = torch.tensor(1.0, dtype=torch.float64)
    # k(x, y) = exp(-|x-y|^2 / 2): k(a0,a1) = e^-0.5, k(a0,b) = e^-2, k(a1,b) = e^-2.5
    kaa = (1 + 1 + 2 * math.exp(-0.5)) / 4
    kbb = 1.0
    kab = (math.exp(-2) + math.exp(-2.5)) / 2
    assert mmd2(a, b, sigma).item() == pytest.approx(kaa + kbb - 2 * kab, abs=1e-12)


def test_median_bandwidth_matches_scipy():
    x = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert median_bandwidth(x).item() == pytest.approx(np.median(pdist(x.numpy())), abs=1e-12)


def test_domain_mmd2_averages_domain_pairs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 3, dtype=torch.float64, generator=g)
    d = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    sigma = median_bandwidth(x)
    pairs = [mmd2(x[d == i], x[d == j], sigma) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert domain_mmd2(x, d).item() == pytest.approx(torch.stack(pairs).mean().item(), abs=1e-12)
    assert domain_mmd2(x, torch.zeros(9, dtype=torch.long)).item() == 0.0
    # domains far apart have a larger MMD than the same points mixed
    far = torch.cat([x[:3], x[3:6] + 10.0])
    assert domain_mmd2(far, d[:6]) > domain_mmd2(x[:6], d[:6])


def test_uniform_target_loss_minimal_at_uniform():
    c = 5
    uniform = torch.zeros(3, c, requires_grad=True)
    loss = uniform_target_loss(uniform)
    assert loss.item() == pytest.approx(math.log(c))
    loss.backward()
    assert uniform.grad.abs().max().item() < 1e-7            # a stationary point
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert uniform_target_loss(torch.randn(3, c, generator=g) * 3) > math.log(c)
    # equal to CE with the uniform distribution as soft target
    logits = torch.randn(4, c, generator=g)
    expected = torch.nn.functional.cross_entropy(logits, torch.full((4, c), 1.0 / c))
    assert uniform_target_loss(logits).item() == pytest.approx(expected.item(), abs=1e-6)
