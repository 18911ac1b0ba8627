"""The language-model tasks: ``tasks`` (the ``TASKS`` registry, ``LMTask``, the built-in ``authors``, ``plays`` and
``jsonl`` tasks) and ``readers`` (the published TOFU and MUSE files). Importing the package registers them all:
``readers`` adds its tasks to ``tasks.TASKS`` here, and ``tasks`` never imports ``readers``."""
from . import tasks  # noqa: F401
from . import readers  # noqa: F401,E402  (registers tofu, muse-news, muse-books)
