"""Reference replication suite for Adam vs AMSGrad (Reddi, Kale & Kumar, ICLR 2018),
following the McGill reproducibility study (Bennatan, Collin & Ng Cheng Hin).

The Python API (:mod:`replication.api`, docs/api.md) is importable from here: ``load_results``,
``train``, ``gridsearch``, ``compare``. They are loaded on first use, so ``import replication``
imports neither Keras nor pandas."""
__version__ = "0.1.0"

_API = ("load_results", "train", "gridsearch", "compare")
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
