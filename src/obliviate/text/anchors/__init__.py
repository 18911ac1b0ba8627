"""WHP's anchored terms: ``dictionary`` (build, load and apply the term map) and ``cli`` (``obliviate lm anchors``)."""
