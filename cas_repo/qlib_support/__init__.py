"""Helpers that make real Qlib models offline, on synthetic data, in about a second.

`cas_repo.qlib_support.synthetic` builds `(datetime, instrument)` frames, wraps them
in a `DatasetH`, trains `LGBModel` (and, with torch, `DNNModelPytorch`/`LSTM`) and
runs a real `qlib.init` in a temporary directory. This package imports nothing heavy:
qlib, lightgbm and torch are imported inside the functions that need them, because
`import qlib.contrib.model.gbdt` alone takes ~1.8 s.
"""
