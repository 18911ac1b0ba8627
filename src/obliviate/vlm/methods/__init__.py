"""Vision-language unlearning methods; importing the package registers them all."""
from .base import METHODS, Method, PromptMethod, create, register_method  # noqa: F401
from . import adu, bbf, domain_baseline  # noqa: F401,E402
