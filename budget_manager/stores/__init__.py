"""Budget stores, one module per backend, chosen by URL scheme (see :func:`store_from_url`)."""

from .base import BudgetStore, register, store_from_url
from .json_file import JsonFileStore, adoptable_paths, default_path

__all__ = [
    "BudgetStore",
    "JsonFileStore",
    "adoptable_paths",
    "default_path",
    "register",
    "store_from_url",
]
