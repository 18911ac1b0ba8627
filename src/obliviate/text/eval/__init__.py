"""Language-model evaluation: ``scoring`` (eval-mode forward passes and greedy generation), ``metrics`` (pure
functions: ROUGE-L, membership scores, truth ratio, forget quality, ...) and ``evaluate`` (MUSE's and TOFU's
evaluations built from both)."""
