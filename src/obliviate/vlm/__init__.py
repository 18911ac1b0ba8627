"""CLIP-style vision-language models: approximate domain unlearning (ADU) and Black-Box Forgetting.

- ``data``: multi-domain datasets (``domain-mnist`` offline; Office-Home, DomainNet, mini-DomainNet, ImageNet +
  ImageNet-Sketch from a data root), forget specs ``domain:NAME`` and ``class:C``, few-shot tasks.
- ``models``: one CLIP interface over Hugging Face ``CLIPModel`` (local folders) and a tiny CLIP pre-trained here.
- ``prompts``: deep visual prompts, learnable text context, InstaPG. ``methods``: one file per method.
- ``metrics`` / ``evaluate``: Mem, For, H, per-domain accuracy. ``run``: one run.
"""
from . import data, files  # noqa: F401,E402  (files registers its sources in data.DATASETS)
