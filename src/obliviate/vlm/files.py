"""Multi-domain image datasets read from ``--data-root`` in their published folder layouts (never downloaded).

- ``office-home``: ``ROOT/{Art,Clipart,Product,Real World}/<Class>/*.jpg`` (the OfficeHomeDataset_10072016 archive;
  ROOT may also be its parent). Domains art, clipart, product, real_world; 65 classes.
- ``domainnet``: ``ROOT/<domain>/<class>/*.jpg`` with the split files ``ROOT/<domain>_train.txt`` and
  ``ROOT/<domain>_test.txt`` (lines ``clipart/aircraft_carrier/clipart_001_000018.jpg 0``); domains clipart,
  infograph, painting, quickdraw, real, sketch.
- ``mini-domainnet``: the DomainNet images with ``ROOT/splits_mini/<domain>_{train,test}.txt`` for clipart, painting,
  real, sketch (126 classes).
- ``imagenet-sketch``: ``ROOT/imagenet/{train,val}/<wnid>/*.JPEG`` (domain real) and ``ROOT/imagenet-sketch/sketch/
  <wnid>/*.JPEG`` (domain sketch, the ImageNet-Sketch archive); optional ``ROOT/imagenet/classnames.txt`` lines
  ``n01440764 tench`` give class names. Classes present in both domains are used.

Class labels come from the class folder names (sorted). Sources without official splits (Office-Home, ImageNet-Sketch)
hold out a fixed 20% of every (class, domain) as the test set. Images load lazily: shorter side resized to
``image_size``, centre crop, RGB in [0, 1].
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..errors import ObliviateError
from .data import DATASETS, DomainSamples, Source

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
TEMPLATE = "a photo of a {}."


class ImageFiles:
    """A lazy list of image files; items are float tensors [3, size, size] in [0, 1]."""

    def __init__(self, paths: Sequence[Path], size: int):
        self.paths = [Path(p) for p in paths]
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i) -> torch.Tensor:
        from PIL import Image
        with Image.open(self.paths[int(i)]) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            arr = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def __getitems__(self, idx: Sequence[int]) -> torch.Tensor:
        return torch.stack([self[i] for i in idx])

    def subset(self, idx: Sequence[int]) -> "ImageFiles":
        return ImageFiles([self.paths[i] for i in idx], self.size)


def _images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _readable(name: str) -> str:
    return name.replace("_", " ").lower()


def _missing(name: str, root: Optional[str], expected: str, missing: Sequence[str]):
    where = root if root else "(no --data-root given)"
    raise ObliviateError(f"{name}: expected under --data-root {where}: {expected}; missing: {', '.join(missing)}")


def _root(name: str, data_root: Optional[str], expected: str) -> Path:
    if not data_root or not Path(data_root).is_dir():
        _missing(name, data_root, expected, [str(data_root or "--data-root")])
    return Path(data_root)


def _build(name, records, class_folders, domain_names, size, config, fixed_split=True, template=TEMPLATE) -> Source:
    """records: (path, class folder, domain index, split or None); None splits hold out 20% per (class, domain)."""
    if not records:
        raise ObliviateError(f"{name}: no images found")
    classes = sorted(set(class_folders))
    index = {c: i for i, c in enumerate(classes)}
    paths = [r[0] for r in records]
    labels = np.array([index[r[1]] for r in records])
    domains = np.array([r[2] for r in records])
    split = np.array([r[3] or "" for r in records], dtype=object)
    if fixed_split:
        rng = np.random.default_rng(0)
        for c in np.unique(labels):
            for d in np.unique(domains):
                members = rng.permutation(np.flatnonzero((labels == c) & (domains == d)))
                n_test = int(round(0.2 * len(members))) if len(members) > 1 else 0
                split[members[:n_test]] = "test"
                split[members[n_test:]] = "train"
    files = ImageFiles(paths, size)
    pool_idx, test_idx = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    if not len(pool_idx) or not len(test_idx):
        raise ObliviateError(f"{name}: the training pool or the test set is empty; check the split files")
    make = lambda idx: DomainSamples(files.subset(idx.tolist()), labels[idx], domains[idx])  # noqa: E731
    return Source(name, make(pool_idx), make(test_idx), tuple(_readable(c) for c in classes), tuple(domain_names),
                  template, config)


OFFICE_HOME = ("Art", "Clipart", "Product", "Real World")


@DATASETS.register("office-home")
def office_home(data_root: Optional[str] = None, image_size: int = 224) -> Source:
    """Office-Home (Venkateswara et al., CVPR 2017): 4 domains, 65 classes."""
    expected = "Art/, Clipart/, Product/, Real World/ (class folders of .jpg images, the OfficeHomeDataset_10072016 layout)"
    root = _root("office-home", data_root, expected)
    if (root / "OfficeHomeDataset_10072016").is_dir():
        root = root / "OfficeHomeDataset_10072016"
    missing = [d for d in OFFICE_HOME if not (root / d).is_dir()]
    if missing:
        _missing("office-home", data_root, expected, [f"{d}/" for d in missing])
    records, folders = [], []
    for di, d in enumerate(OFFICE_HOME):
        for cls in sorted(p for p in (root / d).iterdir() if p.is_dir()):
            folders.append(cls.name)
            records += [(p, cls.name, di, None) for p in _images(cls)]
    names = [d.lower().replace(" ", "_") for d in OFFICE_HOME]
    return _build("office-home", records, folders, names, image_size, {"name": "office-home", "root": str(root)})


def _split_records(name: str, root: Path, split_dir: Path, domains: Sequence[str], data_root, expected: str):
    needed = [split_dir / f"{d}_{s}.txt" for d in domains for s in ("train", "test")]
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    if missing:
        _missing(name, data_root, expected, missing)
    records, folders = [], []
    for di, d in enumerate(domains):
        for s in ("train", "test"):
            for lineno, line in enumerate((split_dir / f"{d}_{s}.txt").read_text().splitlines(), 1):
                if not line.strip():
                    continue
                rel = line.split()[0]
                parts = Path(rel).parts
                if len(parts) < 3:
                    raise ObliviateError(f"{split_dir / f'{d}_{s}.txt'}:{lineno}: expected DOMAIN/CLASS/FILE LABEL")
                path = root / rel
                if not path.exists():
                    raise ObliviateError(f"{name}: {rel} is listed in {d}_{s}.txt but missing under {root}")
                folders.append(parts[1])
                records.append((path, parts[1], di, s))
    return records, folders


DOMAINNET = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
MINI_DOMAINNET = ("clipart", "painting", "real", "sketch")


@DATASETS.register("domainnet")
def domainnet(data_root: Optional[str] = None, image_size: int = 224) -> Source:
    """DomainNet (Peng et al., ICCV 2019): 6 domains, 345 classes, official train/test split files."""
    expected = "<domain>/<class>/*.jpg and <domain>_train.txt, <domain>_test.txt for " + ", ".join(DOMAINNET)
    root = _root("domainnet", data_root, expected)
    records, folders = _split_records("domainnet", root, root, DOMAINNET, data_root, expected)
    return _build("domainnet", records, folders, DOMAINNET, image_size, {"name": "domainnet", "root": str(root)},
                  fixed_split=False)


@DATASETS.register("mini-domainnet")
def mini_domainnet(data_root: Optional[str] = None, image_size: int = 224) -> Source:
    """mini-DomainNet (Zhou et al., DAEL, TIP 2021): 4 DomainNet domains, 126 classes, splits in splits_mini/."""
    expected = ("<domain>/<class>/*.jpg and splits_mini/<domain>_train.txt, splits_mini/<domain>_test.txt for "
                + ", ".join(MINI_DOMAINNET))
    root = _root("mini-domainnet", data_root, expected)
    records, folders = _split_records("mini-domainnet", root, root / "splits_mini", MINI_DOMAINNET, data_root,
                                      expected)
    return _build("mini-domainnet", records, folders, MINI_DOMAINNET, image_size,
                  {"name": "mini-domainnet", "root": str(root)}, fixed_split=False)


@DATASETS.register("imagenet-sketch")
def imagenet_sketch(data_root: Optional[str] = None, image_size: int = 224) -> Source:
    """ImageNet (domain real) with ImageNet-Sketch (Wang et al., NeurIPS 2019; domain sketch)."""
    expected = ("imagenet/val/<wnid>/*.JPEG (or imagenet/train/), imagenet-sketch/sketch/<wnid>/*.JPEG, optional "
                "imagenet/classnames.txt")
    root = _root("imagenet-sketch", data_root, expected)
    real_dirs = [root / "imagenet" / s for s in ("train", "val") if (root / "imagenet" / s).is_dir()]
    sketch_dir = root / "imagenet-sketch" / "sketch"
    missing = ([] if real_dirs else ["imagenet/val/"]) + ([] if sketch_dir.is_dir() else ["imagenet-sketch/sketch/"])
    if missing:
        _missing("imagenet-sketch", data_root, expected, missing)

    def classes(folder):
        return {p.name: p for p in folder.iterdir() if p.is_dir()}

    sketch = classes(sketch_dir)
    real = {}
    for d in real_dirs:
        for wnid, path in classes(d).items():
            real.setdefault(wnid, []).append(path)
    wnids = sorted(set(real) & set(sketch))
    if not wnids:
        raise ObliviateError("imagenet-sketch: no class (wnid folder) is present in both imagenet/ and "
                             "imagenet-sketch/sketch/")
    names = {}
    names_file = root / "imagenet" / "classnames.txt"
    if names_file.exists():
        for line in names_file.read_text().splitlines():
            if line.strip():
                wnid, _, name = line.strip().partition(" ")
                names[wnid] = name.strip()
    records = []
    for w in wnids:
        records += [(p, w, 0, None) for folder in real[w] for p in _images(folder)]
        records += [(p, w, 1, None) for p in _images(sketch[w])]
    src = _build("imagenet-sketch", records, wnids, ("real", "sketch"), image_size,
                 {"name": "imagenet-sketch", "root": str(root)})
    src.class_names = tuple(names.get(w, w) for w in wnids)
    return src
