"""RESTOR (Rezaei et al. 2024): ``data`` (corruption, probes, recovery metrics), ``family`` (the grid family and its
evaluator), ``report`` (table and figure) and ``cli`` (``obliviate lm restor``)."""
