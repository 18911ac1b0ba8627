"""obliviate: machine unlearning for PyTorch, with honest evaluation against retrained (gold) models."""
__version__ = "0.1.0"

from .errors import NonFiniteLossError, ObliviateError  # noqa: E402
from .loop import Loop  # noqa: E402
from .task import ForgetSpec, Task  # noqa: E402

__all__ = ["__version__", "ObliviateError", "NonFiniteLossError", "Loop", "ForgetSpec", "Task", "vision"]


def __getattr__(name):
    # families load lazily: `import obliviate` stays light, `obliviate.vision` imports the classifier stack on use
    if name in ("vision", "text", "vlm", "methods"):
        import importlib
        mod = importlib.import_module(f".{'vision.methods' if name == 'methods' else name}", __name__)
        return mod
    raise AttributeError(name)
