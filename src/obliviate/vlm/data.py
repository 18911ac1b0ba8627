"""Multi-domain image data for CLIP-style models: samples carry a class label and a domain label.

``domain-mnist`` (offline, from scikit-learn's 8x8 digits) renders every digit in six domains, as DomainBed builds its
MNIST domains: ``plain``, ``inverted``, ``sketch`` (edge map, dark lines on white), ``coloured`` (random foreground and
background colours), ``noisy`` (Gaussian pixel noise) and ``rotated`` (40-70 degrees either way). Images are RGB in
[0, 1], 16x16; a model resizes and normalises them itself.

Unlearning trains on few shots per (class, domain) (8, as the paper) drawn per seed from a training pool; evaluation
uses a fixed test set covering every (class, domain).

Forget specs (checked before any work): ``domain:NAME[,NAME]`` forgets the listed domains (the others are memorize
domains); ``class:C[,C]`` forgets classes in every domain (Black-Box Forgetting).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ObliviateError
from ..registry import Registry
from ..store import default_cache_dir

DATASETS = Registry("vlm dataset")

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MNIST_DOMAINS = ("plain", "inverted", "sketch", "coloured", "noisy", "rotated")
TEMPLATE = "a photo of the digit {}."


class DomainSamples(Dataset):
    """Items (image, class, domain, forget flag). ``images`` is a tensor [N, 3, H, W] or a lazy image list with
    ``__getitem__`` / ``__getitems__`` (file-based sources)."""

    def __init__(self, images, labels, domains, forget=None):
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.domains = torch.as_tensor(np.asarray(domains), dtype=torch.long)
        self.forget = (torch.zeros(len(self.labels), dtype=torch.bool) if forget is None
                       else torch.as_tensor(np.asarray(forget), dtype=torch.bool))
        if not len(images) == len(self.labels) == len(self.domains) == len(self.forget):
            raise ObliviateError("images, labels, domains and forget flags differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], self.domains[i], self.forget[i]

    def __getitems__(self, idx: Sequence[int]):
        idx = torch.as_tensor(idx, dtype=torch.long)
        images = (self.images[idx] if isinstance(self.images, torch.Tensor)
                  else self.images.__getitems__(idx.tolist()))
        return images, self.labels[idx], self.domains[idx], self.forget[idx]

    def subset(self, idx) -> "DomainSamples":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        images = self.images[idx] if isinstance(self.images, torch.Tensor) else self.images.subset(idx.tolist())
        return DomainSamples(images, self.labels[idx], self.domains[idx], self.forget[idx])

    def with_forget(self, forget) -> "DomainSamples":
        return DomainSamples(self.images, self.labels, self.domains, forget)


@dataclasses.dataclass
class Source:
    """A multi-domain dataset before a forget spec: a training pool and a test set, with class and domain names."""
    name: str
    pool: DomainSamples
    test: DomainSamples
    class_names: Tuple[str, ...]
    domain_names: Tuple[str, ...]
    template: str = "a photo of a {}."
    config: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------- forget specs
@dataclasses.dataclass(frozen=True)
class Forget:
    """A parsed forget spec: ``kind`` is "domain" or "class"; ``names`` the domains or class indices as given."""
    kind: str
    names: Tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(self.names)}"


def parse_forget(text: str, domain_names: Sequence[str], num_classes: int) -> Forget:
    """Parse and check ``domain:NAME[,NAME]`` or ``class:C[,C]`` against a dataset's domains and classes."""
    if not isinstance(text, str) or ":" not in text:
        raise ObliviateError(f"malformed forget spec {text!r}: expected domain:NAME[,NAME] (e.g. domain:sketch) or "
                             f"class:C[,C]")
    kind, arg = (s.strip() for s in text.split(":", 1))
    names = tuple(n.strip() for n in arg.split(",") if n.strip())
    if kind not in ("domain", "class"):
        raise ObliviateError(f"unknown forget-spec kind {kind!r} in {text!r}; vision-language tasks take domain:NAME "
                             f"or class:C")
    if not names:
        raise ObliviateError(f"forget spec {text!r} names nothing to forget")
    if len(set(names)) != len(names):
        raise ObliviateError(f"forget spec {text!r}: an entry is listed twice")
    if kind == "domain":
        unknown = [n for n in names if n not in domain_names]
        if unknown:
            raise ObliviateError(f"forget spec {text!r}: unknown domain {unknown[0]!r}; this dataset's domains are "
                                 f"{', '.join(domain_names)}")
        if len(names) == len(domain_names):
            raise ObliviateError(f"forget spec {text!r} forgets every domain: no memorize domain would be left")
    else:
        try:
            classes = [int(n) for n in names]
        except ValueError:
            raise ObliviateError(f"forget spec {text!r}: classes must be integers, e.g. class:3") from None
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ObliviateError(f"forget spec {text!r}: class {bad[0]} does not exist; classes are 0..{num_classes - 1}")
        if len(classes) == num_classes:
            raise ObliviateError(f"forget spec {text!r} forgets every class: nothing would be memorized")
    return Forget(kind, names)


# ---------------------------------------------------------------- the task
@dataclasses.dataclass
class DomainTask:
    """Few-shot training samples and the test set of one (dataset, forget spec, seed), with forget flags set.

    ``train`` holds ``shots`` images per (class, domain); an item's forget flag says whether it belongs to a forget
    domain (``domain:``) or a forget class (``class:``)."""
    dataset: str
    forget: Forget
    seed: int
    train: DomainSamples
    test: DomainSamples
    class_names: Tuple[str, ...]
    domain_names: Tuple[str, ...]
    template: str
    shots: int
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    @property
    def forget_domains(self) -> Tuple[int, ...]:
        return tuple(self.domain_names.index(n) for n in self.forget.names) if self.forget.kind == "domain" else ()

    @property
    def forget_classes(self) -> Tuple[int, ...]:
        return tuple(int(n) for n in self.forget.names) if self.forget.kind == "class" else ()

    def identity(self) -> dict:
        """What fixes this task's data: sizes and a hash of the training samples chosen (for run ids)."""
        digest = hashlib.sha256(self.train.labels.numpy().tobytes() + self.train.domains.numpy().tobytes()
                                + np.asarray(self.config.get("train_index", []), dtype=np.int64).tobytes())
        return {"dataset": self.dataset, "forget": str(self.forget), "seed": self.seed, "shots": self.shots,
                "n_train": len(self.train), "n_test": len(self.test), "train_hash": digest.hexdigest()[:16]}


def forget_flags(samples: DomainSamples, forget: Forget, domain_names: Sequence[str]) -> torch.Tensor:
    if forget.kind == "domain":
        ids = torch.tensor([domain_names.index(n) for n in forget.names])
        return torch.isin(samples.domains, ids)
    return torch.isin(samples.labels, torch.tensor([int(n) for n in forget.names]))


def few_shot(labels: np.ndarray, domains: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` samples per (class, domain), drawn without replacement (all of them where fewer exist)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        for d in np.unique(domains):
            members = np.flatnonzero((labels == c) & (domains == d))
            if len(members):
                chosen.append(rng.choice(members, size=min(shots, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def make_task(dataset: "str | Source", forget: str, seed: int = 0, shots: int = 8, data_root: Optional[str] = None,
              **source_kwargs) -> DomainTask:
    """Load a registered dataset (or take a :class:`Source`), check the forget spec, draw the few-shot training set."""
    if shots < 1:
        raise ObliviateError("shots must be at least 1")
    source = dataset if isinstance(dataset, Source) else load_source(dataset, data_root, **source_kwargs)
    spec = parse_forget(forget, source.domain_names, len(source.class_names))
    idx = few_shot(source.pool.labels.numpy(), source.pool.domains.numpy(), shots, seed)
    train = source.pool.subset(idx)
    train = train.with_forget(forget_flags(train, spec, source.domain_names))
    test = source.test.with_forget(forget_flags(source.test, spec, source.domain_names))
    return DomainTask(dataset=source.name, forget=spec, seed=seed, train=train, test=test,
                      class_names=source.class_names, domain_names=source.domain_names, template=source.template,
                      shots=shots, config={**source.config, "train_index": idx.tolist()})


def load_source(name: str, data_root: Optional[str] = None, **kwargs) -> Source:
    return DATASETS.get(name)(data_root=data_root, **kwargs)


# ---------------------------------------------------------------- domain-mnist
def _sobel(img: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    mag = np.hypot(ndimage.sobel(img, axis=0, mode="constant"), ndimage.sobel(img, axis=1, mode="constant"))
    return mag / max(mag.max(), 1e-8)


def _hsv_colour(rng, value: float) -> np.ndarray:
    import colorsys
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.6, 1.0), value))


def render(gray: np.ndarray, domain: str, rng: np.random.Generator) -> np.ndarray:
    """One 16x16 grey digit in [0, 1] rendered in ``domain``: float32 [3, 16, 16] in [0, 1]."""
    from scipy import ndimage
    g = gray
    if domain == "plain":
        rgb = np.stack([g] * 3)
    elif domain == "inverted":
        rgb = np.stack([1.0 - g] * 3)
    elif domain == "sketch":
        rgb = np.stack([1.0 - _sobel(g)] * 3)
    elif domain == "coloured":
        fg, bg = _hsv_colour(rng, 1.0), _hsv_colour(rng, 0.35)
        rgb = g[None] * fg[:, None, None] + (1.0 - g[None]) * bg[:, None, None]
    elif domain == "noisy":
        rgb = np.stack([np.clip(g + rng.normal(0.0, 0.2, g.shape), 0.0, 1.0)] * 3)
    elif domain == "rotated":
        angle = rng.uniform(40.0, 70.0) * rng.choice([-1.0, 1.0])
        rgb = np.stack([np.clip(ndimage.rotate(g, angle, reshape=False, order=1, mode="constant"), 0.0, 1.0)] * 3)
    else:
        raise ObliviateError(f"unknown domain-mnist domain {domain!r}; domains are {', '.join(MNIST_DOMAINS)}")
    return rgb.astype(np.float32)


def _digits16() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, upsampled (bilinear) to 16x16 grey images in [0, 1]."""
    from scipy import ndimage
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.stack([np.clip(ndimage.zoom(im / 16.0, 2, order=1), 0.0, 1.0) for im in d.images])
    return x.astype(np.float32), d.target.astype(np.int64)


def digit_splits(labels: np.ndarray) -> dict:
    """Fixed, stratified split of the digits: 60% pre-training (the tiny CLIP), 20% unlearning pool, 20% test."""
    rng = np.random.default_rng(0)
    parts = {"pretrain": [], "pool": [], "test": []}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        a, b = int(0.6 * len(members)), int(0.8 * len(members))
        parts["pretrain"].append(members[:a])
        parts["pool"].append(members[a:b])
        parts["test"].append(members[b:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def render_all(gray: np.ndarray, labels: np.ndarray, domains: Sequence[str], seed: int, copies: int = 1):
    """Every image rendered ``copies`` times in every domain: (images [N*D*copies, 3, 16, 16], labels, domains)."""
    rng = np.random.default_rng(seed)
    xs, ys, ds = [], [], []
    for _ in range(copies):
        for di, dom in enumerate(domains):
            xs.extend(render(g, dom, rng) for g in gray)
            ys.append(labels)
            ds.append(np.full(len(labels), di))
    return np.stack(xs), np.concatenate(ys), np.concatenate(ds)


def domain_mnist_arrays(domains: Sequence[str] = MNIST_DOMAINS, parts: Sequence[str] = ("pool", "test")) -> dict:
    """Rendered arrays of the given parts ("pretrain", "pool", "test"), each cached as .npz under the cache folder
    (rendering takes seconds): ``{part}_x`` [N, 3, 16, 16], ``{part}_y``, ``{part}_d``."""
    import io
    from ..store import atomic_write_bytes
    key = hashlib.sha256(",".join(domains).encode()).hexdigest()[:10]
    out, gray, split = {}, None, None
    for i, part in enumerate(("pretrain", "pool", "test")):
        if part not in parts:
            continue
        path = default_cache_dir() / "data" / f"domain-mnist-v2-{part}-{key}.npz"
        if path.exists():
            with np.load(path) as z:
                out.update({k: z[k] for k in z.files})
            continue
        if gray is None:
            gray, labels = _digits16()
            split = digit_splits(labels)
        x, y, d = render_all(gray[split[part]], labels[split[part]], domains, seed=101 + i)
        arrays = {f"{part}_x": x, f"{part}_y": y, f"{part}_d": d}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        out.update(arrays)
    return out


@DATASETS.register("domain-mnist")
def domain_mnist(data_root: Optional[str] = None, domains: str = ",".join(MNIST_DOMAINS)) -> Source:
    """Digits in six rendered domains (offline). Pool: ~360 digits x 6 domains; test: ~360 digits x 6 domains."""
    names = tuple(n.strip() for n in domains.split(",") if n.strip()) if isinstance(domains, str) else tuple(domains)
    unknown = [n for n in names if n not in MNIST_DOMAINS]
    if unknown or len(names) < 2:
        raise ObliviateError(f"domain-mnist: domains must be two or more of {', '.join(MNIST_DOMAINS)}; "
                             f"got {','.join(names)}")
    a = domain_mnist_arrays(names)
    pool = DomainSamples(torch.from_numpy(a["pool_x"]), a["pool_y"], a["pool_d"])
    test = DomainSamples(torch.from_numpy(a["test_x"]), a["test_y"], a["test_d"])
    return Source("domain-mnist", pool, test, DIGIT_NAMES, names, TEMPLATE,
                  {"name": "domain-mnist", "domains": list(names), "version": 2})


def pretraining_pairs(domains: Sequence[str] = MNIST_DOMAINS) -> DomainSamples:
    """domain-mnist's pre-training images (disjoint from the unlearning pool and the test set), for the tiny CLIP."""
    a = domain_mnist_arrays(domains, parts=("pretrain",))
    return DomainSamples(torch.from_numpy(a["pretrain_x"]), a["pretrain_y"], a["pretrain_d"])

