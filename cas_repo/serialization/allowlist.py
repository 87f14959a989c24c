"""The globals a stored pickle may name: exact names, never whole modules.

numpy, pandas and qlib each contain functions that load pickles or run code
(``numpy.load``, ``pandas.read_pickle``, ``qlib.utils.init_instance_by_config``), so a
module-level allowance would be a hole. Each entry below is a class or a reconstructor
that pickles of allowed types really need.

The list is extended from code (:func:`allow_globals`) or from the process environment
(``CAS_REPO_ALLOW_GLOBALS``, comma-separated) — never from anything stored in the repo.
"""

from __future__ import annotations

import os
import threading

_BUILTINS = [
    "builtins." + n
    for n in (
        "object", "list", "dict", "set", "frozenset", "tuple", "str", "bytes", "bytearray",
        "int", "float", "complex", "bool", "slice", "range", "NoneType",
    )
]

_STDLIB = [
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "collections.Counter",
    "copyreg._reconstructor",  # calls base.__new__(cls): cls itself passes find_class
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
    "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
    "pathlib.PosixPath", "pathlib.PurePosixPath", "pathlib.WindowsPath",
    "pathlib.PureWindowsPath", "zoneinfo.ZoneInfo", "zoneinfo._common._load_timezone",
    "enum.Enum",
]

_NUMPY = [
    f"{mod}.{name}"
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray")
    for name in ("_reconstruct", "scalar")
] + [
    "numpy.ndarray", "numpy.dtype", "numpy._core.numeric._frombuffer",
    "numpy.core.numeric._frombuffer", "numpy.ma.core._mareconstruct",
    "numpy.ma.core.MaskedArray",
] + [
    f"numpy.dtypes.{n}DType"
    for n in (
        "Float16", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64", "UInt8",
        "UInt16", "UInt32", "UInt64", "Bool", "Object", "Str", "Bytes", "DateTime64",
        "TimeDelta64", "LongDouble", "Complex64", "Complex128", "Void",
    )
] + ["numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
     "numpy.random._pickle.__randomstate_ctor", "numpy.random._mt19937.MT19937",
     "numpy.random._pcg64.PCG64"]

_PANDAS = [
    "pandas.DataFrame", "pandas.Series", "pandas.Index", "pandas.RangeIndex",
    "pandas.MultiIndex", "pandas.DatetimeIndex", "pandas.TimedeltaIndex",
    "pandas.CategoricalIndex", "pandas.PeriodIndex", "pandas.Categorical",
    "pandas.CategoricalDtype", "pandas.StringDtype", "pandas.DatetimeTZDtype",
    "pandas.Timestamp", "pandas.Timedelta", "pandas.Period", "pandas.Interval",
    "pandas.core.frame.DataFrame", "pandas.core.series.Series",
    "pandas.core.indexes.base.Index", "pandas.core.indexes.base._new_Index",
    "pandas.core.indexes.range.RangeIndex", "pandas.core.indexes.multi.MultiIndex",
    "pandas.core.indexes.datetimes.DatetimeIndex", "pandas.core.indexes.datetimes._new_DatetimeIndex",
    "pandas.core.internals.managers.BlockManager",
    "pandas.core.internals.managers.SingleBlockManager",
    "pandas._libs.internals._unpickle_block",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas.core.arrays.datetimes.DatetimeArray",
    "pandas._libs.tslibs.dtypes.PeriodDtypeBase",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    "pandas._libs.tslibs.offsets.BusinessDay", "pandas._libs.tslibs.offsets.Day",
    "pandas._libs.tslibs.offsets.Week",
    "pandas.core.arrays.categorical.Categorical",
    "pandas.core.arrays.datetimes.DatetimeArray",
    "pandas.core.arrays.string_.StringArray", "pandas.arrays.ArrowStringArray",
    "pandas.arrays.StringArray", "pandas.arrays.DatetimeArray",
    "pandas.core.arrays.string_arrow.ArrowStringArray",
    # pandas' Arrow-backed strings pickle through these constructors of pyarrow data.
    "pyarrow.lib._restore_array", "pyarrow.lib.type_for_alias", "pyarrow.lib.py_buffer",
]

_MODELS = [
    "qlib.contrib.model.gbdt.LGBModel",
    "qlib.contrib.model.xgboost.XGBModel",
    "qlib.contrib.model.catboost_model.CatBoostModel",
    "qlib.contrib.model.linear.LinearModel",
    "qlib.contrib.model.double_ensemble.DEnsembleModel",
    "qlib.contrib.model.highfreq_gdbt_model.HFLGBModel",
    "lightgbm.basic.Booster",
    # Written in place of lightgbm.basic._InnerPredictor (see substitutes.py).
    "cas_repo.serialization.substitutes.InertLightGBMPredictor",
    "xgboost.core.Booster",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.preprocessing._data.StandardScaler",
]

# Qlib's PyTorch models (DNN, LSTM, GRU, ALSTM). Tensors, Parameters and dtypes are
# stored by ``torch_support`` as arrays and names and rebuilt by its three functions;
# torch's own tensor rebuilders are absent on purpose (they go through ``torch.load``).
# Modules and optimizers are rebuilt as ``cls.__new__`` plus their pickled ``__dict__``.
_TORCH = [
    "cas_repo.serialization.torch_support._rebuild_tensor",
    "cas_repo.serialization.torch_support._rebuild_parameter",
    "cas_repo.serialization.torch_support._dtype",
    "torch.device", "torch.Size",
    "torch.nn.modules.linear.Linear", "torch.nn.modules.rnn.LSTM", "torch.nn.modules.rnn.GRU",
    "torch.nn.modules.batchnorm.BatchNorm1d", "torch.nn.modules.dropout.Dropout",
    "torch.nn.modules.activation.LeakyReLU", "torch.nn.modules.activation.SiLU",
    "torch.nn.modules.activation.Tanh", "torch.nn.modules.activation.Softmax",
    "torch.nn.modules.container.ModuleList", "torch.nn.modules.container.Sequential",
    "torch.optim.adam.Adam", "torch.optim.sgd.SGD",
    "qlib.log.QlibLogger",
    "qlib.contrib.model.pytorch_nn.DNNModelPytorch", "qlib.contrib.model.pytorch_nn.Net",
    "qlib.contrib.model.pytorch_lstm.LSTM", "qlib.contrib.model.pytorch_lstm.LSTMModel",
    "qlib.contrib.model.pytorch_gru.GRU", "qlib.contrib.model.pytorch_gru.GRUModel",
    "qlib.contrib.model.pytorch_alstm.ALSTM", "qlib.contrib.model.pytorch_alstm.ALSTMModel",
]

_DEFAULT = frozenset(_BUILTINS + _STDLIB + _NUMPY + _PANDAS + _MODELS + _TORCH)

_lock = threading.Lock()
_extra: set[str] = set()


def allow_globals(*names: str) -> None:
    """Allow stored pickles to name these exact globals (``"package.module.Name"``).

    Only call this for classes you trust: an allowed global is called with arguments
    that the stored bytes choose.
    """
    for n in names:
        if not isinstance(n, str) or "." not in n or n.endswith(".") or "*" in n:
            raise ValueError(f"allow an exact global such as 'mypkg.models.MyModel', not {n!r}")
    with _lock:
        _extra.update(names)


def _from_env() -> frozenset[str]:
    raw = os.environ.get("CAS_REPO_ALLOW_GLOBALS", "")
    return frozenset(n.strip() for n in raw.split(",") if n.strip() and "*" not in n)


def allowed_globals() -> frozenset[str]:
    """Every global currently allowed (defaults, code, environment)."""
    with _lock:
        return _DEFAULT | _extra | _from_env()


def is_allowed(module: str, name: str) -> bool:
    full = f"{module}.{name}"
    if full in _DEFAULT:
        return True
    with _lock:
        if full in _extra:
            return True
    return full in _from_env()
