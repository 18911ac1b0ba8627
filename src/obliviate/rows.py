"""What every result row records about the software it ran on (rows themselves are built by ``grid.py``)."""
from __future__ import annotations

import platform


def versions() -> dict:
    import numpy
    import torch

    from . import __version__
    out = {"obliviate": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "machine": platform.machine(), "platform": platform.platform()}
    try:
        import accelerate
        out["accelerate"] = accelerate.__version__
    except ImportError:
        pass
    return out
