"""Image classifiers: data sources, models, training, methods, metrics and evaluation."""
from .data import DATASETS, Source, from_datasets, make_task
# the registrations, in one place: files adds its sources to data.DATASETS (cifar10, cifar100, imagefolder),
# selection adds the worst-case:F forget kind to task.FORGET_KINDS
from . import files, selection  # noqa: F401
from .evaluate import LogitsCache, evaluate
from .methods import METHODS, Method, create
from .models import MODELS, make_model, split_model
from .run import unlearn
from .train import Recipe, train_model, train_reference

__all__ = ["DATASETS", "Source", "from_datasets", "make_task", "LogitsCache", "evaluate", "METHODS", "Method", "create",
           "MODELS", "make_model", "split_model", "unlearn", "Recipe", "train_model", "train_reference"]
