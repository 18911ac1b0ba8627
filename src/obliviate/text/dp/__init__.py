"""DP-SGD for DP2Unlearning: ``sgd`` (training through Opacus, the cached DP base) and ``cli``
(``obliviate lm dp-base``)."""
