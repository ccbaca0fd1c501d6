"""Fused sparse optimizers: one training step without a gradient array.

An optimizer here updates a layer's table straight from the lookup's gradient: the C++ kernel
sorts the ids, sums each id's gradient rows (in position order) and applies the update to that
row of the table and of the optimizer state at once. No dense ``(V, D)`` gradient and no separate
gradient array is written, and only the rows the batch touched change ("lazy" semantics, as
PyTorch's optimizers on ``sparse=True`` embeddings). Results are identical for any thread count.

Use it through the layer, ``layer.backward(grad_output, optimizer=opt)``, or, equivalently,
``opt.step(layer, grad_output)``; both work for :class:`fastembed.Embedding` and
:class:`fastembed.EmbeddingBag` and use the ids (and bags) of the layer's last forward.

State arrays are NumPy arrays owned by the optimizer, allocated the first time a table is
stepped (zeros, in the table's arithmetic dtype: float32 for float32, float16 and bfloat16
tables, float64 for float64 ones).

float16 and bfloat16 tables are updated in float32 and each new value is rounded once when
written: to nearest by default, or, with ``stochastic_rounding=True``, up or down at random with
probability proportional to nearness (unbiased, so that updates smaller than the table's
precision still move it on average, as FBGEMM's stochastic rounding). The random bits come from
a counter-based stream keyed by ``(seed, step, row, element)``, so results do not depend on the
thread count; ``step`` counts the optimizer's steps on that table (state ``"step"``).

:meth:`state_dict` returns the state arrays with the hyper-parameters in a flat dict that
``np.savez`` saves as it is::

    np.savez("opt.npz", **opt.state_dict())
    opt.load_state_dict(np.load("opt.npz"))
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _core
from ._dtypes import arithmetic_dtype

__all__ = ["SGD", "Adagrad", "Adam", "SparseOptimizer"]


class SparseOptimizer:
    """Common machinery: per-table state, checks, ``step``, ``state_dict``.

    Tables are numbered in the order they are first stepped ("table0", "table1", ...); the
    state of table ``k`` is saved under ``"table{k}.<name>"``.
    """

    #: Names of the hyper-parameters saved in the state dict.
    hyperparameters: tuple[str, ...] = ()
    #: Saved (and shown) too when stochastic rounding is on.
    rounding_parameters: tuple[str, ...] = ("stochastic_rounding", "seed")

    def __init__(self, stochastic_rounding: bool = False, seed: int = 0) -> None:
        self.stochastic_rounding = bool(stochastic_rounding)
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self.seed = int(seed)
        self._layers: list[Any] = []
        self._states: list[dict[str, np.ndarray]] = []
        self._pending: dict[int, dict[str, np.ndarray]] = {}

    # --- what a subclass provides -----------------------------------------------------------

    def _state_layout(self, weight: np.ndarray) -> dict[str, tuple[tuple, np.dtype]]:
        """Name -> (shape, dtype) of each state array of a table."""
        raise NotImplementedError

    def _layout(self, weight: np.ndarray) -> dict[str, tuple[tuple, np.dtype]]:
        """The subclass's state, plus the step counter that keys stochastic rounding."""
        layout = self._state_layout(weight)
        if self.stochastic_rounding:
            layout.setdefault("step", ((), np.dtype(np.int64)))
        return layout

    def _rounding(self, state: dict[str, np.ndarray]) -> tuple[bool, int, int]:
        """(stochastic, seed, step) for the kernel: this step's number keys the stream."""
        if not self.stochastic_rounding:
            return (False, 0, 0)
        return (True, self.seed, int(state["step"]) + 1)

    def _update(self, weight: np.ndarray, gradient: tuple, state: dict[str, np.ndarray]) -> None:
        """Run the fused kernel; raise before writing anything if an argument is bad."""
        raise NotImplementedError

    # --- public API -------------------------------------------------------------------------

    def step(self, layer: Any, grad_output: np.ndarray) -> None:
        """Update ``layer.weight`` (and this optimizer's state for it) from ``grad_output``.

        Parameters
        ----------
        layer : Embedding or EmbeddingBag
            A layer whose last forward gave the output that ``grad_output`` is the gradient of.
        grad_output : ndarray
            Gradient of the loss w.r.t. that output, the table's dtype.

        Raises
        ------
        TypeError
            ``layer`` is not an Embedding or EmbeddingBag, or ``grad_output`` has another dtype.
        ValueError
            The layer is frozen (``trainable=False``) or its table is read-only, a state array
            does not fit the table, or ``grad_output`` has the wrong shape.
        RuntimeError
            The layer has had no forward.

        Nothing (table or state) is modified when an exception is raised.
        """
        if not hasattr(layer, "_gradient_description"):
            raise TypeError(
                f"an optimizer steps an Embedding or EmbeddingBag layer, got {type(layer).__name__}"
            )
        weight = layer.weight
        if not isinstance(weight, np.ndarray):
            raise TypeError(
                f"{layer!r} looks up a {type(weight).__name__}, which cannot be trained"
            )
        if not layer.trainable:
            raise ValueError(f"{layer!r} is frozen (trainable=False): its table is not updated")
        if not weight.flags.writeable:
            raise ValueError(f"the table of {layer!r} is read-only: an optimizer cannot update it")
        gradient = layer._gradient_description(grad_output)
        index = self._index(layer)
        state = self._states[index] if index is not None else self._first_state(weight)
        self._update(weight, gradient, state)
        counter = state.get("step")
        if self.stochastic_rounding and type(self) is not Adam and counter is not None:
            counter[...] = int(counter) + 1  # Adam counts its own steps
        if index is None:  # registered (and a loaded state consumed) only once the step succeeded
            self._pending.pop(len(self._states), None)
            self._layers.append(layer)
            self._states.append(state)

    def state(self, layer: Any) -> dict[str, np.ndarray]:
        """The state arrays of ``layer``'s table (empty if it has never been stepped)."""
        index = self._index(layer)
        return {} if index is None else self._states[index]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Hyper-parameters and every table's state as a flat dict of arrays (``np.savez``)."""
        result = {name: np.asarray(getattr(self, name)) for name in self._saved_parameters()}
        for index, state in enumerate(self._states):
            for name, array in state.items():
                result[f"table{index}.{name}"] = array
        return result

    def load_state_dict(self, state_dict: Any) -> None:
        """Restore what :meth:`state_dict` returned (or ``np.load`` of its ``np.savez``).

        Hyper-parameters are set at once. Table states are matched to tables by number: to
        tables already stepped now, and to the next tables stepped otherwise (their shape and
        dtype are checked then). Arrays are copied.
        """
        values = {key: np.asarray(state_dict[key]) for key in state_dict}
        missing = [name for name in self.hyperparameters if name not in values]
        if missing:
            raise ValueError(f"state_dict lacks the hyper-parameters {missing}")
        tables: dict[int, dict[str, np.ndarray]] = {}
        for key, value in values.items():
            if key in self.hyperparameters or key in self.rounding_parameters:
                continue
            prefix, _, name = key.partition(".")
            if not (prefix.startswith("table") and prefix[5:].isdigit() and name):
                raise ValueError(f"unexpected key {key!r} in state_dict")
            tables.setdefault(int(prefix[5:]), {})[name] = value.copy()
        for index, state in tables.items():
            if index < len(self._states):
                self._check_loaded(state, self._layers[index].weight)
        for name in self.hyperparameters:
            setattr(self, name, _hyperparameter(values[name]))
        self.stochastic_rounding = bool(values.get("stochastic_rounding", False))
        self.seed = int(values.get("seed", 0))
        self._pending = {}
        for index, state in tables.items():
            if index < len(self._states):
                self._states[index] = state
            else:
                self._pending[index] = state

    # --- checkpoints (Embedding.save / load with optimizer=) ---------------------------------

    def _checkpoint(self, layer: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What a checkpoint of ``layer`` stores of this optimizer: a description (class,
        whether it has stepped the layer) and its arrays (hyper-parameters as
        :meth:`state_dict` has them, and the layer's state arrays as ``state.<name>``)."""
        index = self._index(layer)
        arrays = {name: np.asarray(getattr(self, name)) for name in self._saved_parameters()}
        if index is not None:
            arrays.update({f"state.{name}": array for name, array in self._states[index].items()})
        return {"class": type(self).__name__, "stepped": index is not None}, arrays

    def _restore(
        self, layer: Any, description: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        """Adopt ``layer`` as the next table, with the state a :meth:`_checkpoint` saved;
        ``ValueError`` naming what differs if this optimizer is not the one that saved it."""
        if not isinstance(description, dict) or description.get("class") != type(self).__name__:
            saved = description.get("class") if isinstance(description, dict) else description
            raise ValueError(
                f"the checkpoint holds {saved} optimizer state, the optimizer given is "
                f"{type(self).__name__}"
            )
        for name in self.hyperparameters:
            if name not in arrays:
                raise ValueError(f"the checkpoint lacks the hyper-parameter {name}")
            saved, current = _hyperparameter(arrays[name]), getattr(self, name)
            if saved != current:
                raise ValueError(
                    f"the checkpoint was saved with {type(self).__name__} {name}={saved!r}, this "
                    f"optimizer has {name}={current!r}"
                )
        if not description.get("stepped"):
            return  # the optimizer had not stepped the layer yet: nothing to restore
        prefix = "state."
        state = {
            n[len(prefix) :]: np.asarray(a, order="C")
            for n, a in arrays.items()
            if n.startswith(prefix)
        }
        self._check_loaded(state, layer.weight)
        self._pending.pop(len(self._states), None)
        self._layers.append(layer)
        self._states.append(state)

    # --- helpers ----------------------------------------------------------------------------

    def _saved_parameters(self) -> tuple[str, ...]:
        return self.hyperparameters + (self.rounding_parameters if self.stochastic_rounding else ())

    def _index(self, layer: Any) -> int | None:
        for index, known in enumerate(self._layers):
            if known is layer:
                return index
        return None

    def _first_state(self, weight: np.ndarray) -> dict[str, np.ndarray]:
        loaded = self._pending.get(len(self._states))
        if loaded is None:
            return self._new_state(weight)
        self._check_loaded(loaded, weight)
        return loaded

    def _check_loaded(self, state: dict[str, np.ndarray], weight: np.ndarray) -> None:
        expected = self._layout(weight)
        if set(state) != set(expected):
            raise ValueError(f"loaded state has {sorted(state)}, expected {sorted(expected)}")
        for name, (shape, dtype) in expected.items():
            if state[name].shape != shape or state[name].dtype != dtype:
                raise ValueError(
                    f"loaded {name} has shape {state[name].shape} and dtype {state[name].dtype}, "
                    f"the table needs {shape} and {dtype}"
                )

    def _new_state(self, weight: np.ndarray) -> dict[str, np.ndarray]:
        # np.zeros maps untouched pages lazily: a large table's state costs nothing until used.
        layout = self._layout(weight)
        return {name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in layout.items()}

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._saved_parameters())
        return f"{type(self).__name__}({settings})"


def _hyperparameter(value: np.ndarray) -> Any:
    if value.ndim == 0:
        return value.item()
    return tuple(value.tolist())


def _real(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = _real(name, value)
    if not (value >= 0 if allow_zero else value > 0) or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


class SGD(SparseOptimizer):
    """Stochastic gradient descent on the rows a batch touched: ``w -= lr * g``.

    With ``momentum > 0`` each row keeps a velocity, updated lazily when the row is touched:
    ``buf = momentum * buf + g; w -= lr * buf`` (PyTorch's SGD formula with dampening 0; PyTorch
    itself refuses momentum on sparse gradients, and rows not in the batch keep their velocity
    unchanged here rather than coasting). ``g`` is the row's gradient summed over its
    occurrences in the batch. With ``momentum=0`` this is exactly ``torch.optim.SGD`` on a
    ``sparse=True`` embedding.

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    momentum : float, default 0
        Momentum factor, >= 0; state ``"momentum_buffer"`` (V, D) when > 0.
    stochastic_rounding : bool, default False
        Round the updated values of a float16 / bfloat16 table stochastically (see the
        module's documentation); no effect on float32 / float64 tables.
    seed : int, default 0
        Seed of the stochastic rounding's stream.
    """

    hyperparameters = ("lr", "momentum")

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        *,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(stochastic_rounding, seed)
        self.lr = _check_positive("lr", lr)
        self.momentum = _check_positive("momentum", momentum, allow_zero=True)

    def _state_layout(self, weight: np.ndarray) -> dict[str, tuple[tuple, np.dtype]]:
        if self.momentum == 0:
            return {}
        return {"momentum_buffer": (weight.shape, arithmetic_dtype(weight.dtype))}

    def _update(self, weight: np.ndarray, gradient: tuple, state: dict[str, np.ndarray]) -> None:
        buffer = state.get("momentum_buffer")
        if self.momentum != 0 and buffer is None:
            raise ValueError("momentum was turned on after steps without it: no momentum_buffer")
        _core.sgd_update(weight, gradient, self.lr, self.momentum, buffer, self._rounding(state))


class Adagrad(SparseOptimizer):
    """Adagrad on the rows a batch touched, as ``torch.optim.Adagrad`` on sparse gradients.

    Element-wise (default): ``state_sum += g**2; w -= lr * g / (sqrt(state_sum) + eps)``, state
    ``"state_sum"`` of shape (V, D). Row-wise (``rowwise=True``, as FBGEMM and TorchRec): one
    accumulator per row, ``state_sum[r] += mean(g**2)`` over the row, state of shape (V,): a
    D-times smaller state. ``g`` is the row's gradient summed over its occurrences in the batch.

    Parameters
    ----------
    lr : float, default 0.01
    eps : float, default 1e-10
    rowwise : bool, default False
    stochastic_rounding : bool, default False
    seed : int, default 0
        As for :class:`SGD`.
    """

    hyperparameters = ("lr", "eps", "rowwise")

    def __init__(
        self,
        lr: float = 0.01,
        eps: float = 1e-10,
        rowwise: bool = False,
        *,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(stochastic_rounding, seed)
        self.lr = _check_positive("lr", lr)
        self.eps = _check_positive("eps", eps, allow_zero=True)
        self.rowwise = bool(rowwise)

    def _state_layout(self, weight: np.ndarray) -> dict[str, tuple[tuple, np.dtype]]:
        shape = weight.shape[:1] if self.rowwise else weight.shape
        return {"state_sum": (shape, arithmetic_dtype(weight.dtype))}

    def _update(self, weight: np.ndarray, gradient: tuple, state: dict[str, np.ndarray]) -> None:
        _core.adagrad_update(
            weight,
            gradient,
            self.lr,
            self.eps,
            self.rowwise,
            state["state_sum"],
            self._rounding(state),
        )


class Adam(SparseOptimizer):
    """Lazy Adam, as ``torch.optim.SparseAdam``: only touched rows' moments and values change.

    For each touched row, with ``g`` its gradient summed over the batch and ``t`` the number of
    steps taken on this table (one per :meth:`step`, shared by all rows, as SparseAdam's
    per-parameter step)::

        m += (1 - beta1) * (g - m)
        v += (1 - beta2) * (g**2 - v)
        w -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)

    State per table: ``"exp_avg"`` and ``"exp_avg_sq"`` (V, D), ``"step"`` (0-d int64).

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    stochastic_rounding : bool, default False
    seed : int, default 0
        As for :class:`SGD` (the stream is keyed by Adam's own step counter).
    """

    hyperparameters = ("lr", "betas", "eps")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(stochastic_rounding, seed)
        self.lr = _check_positive("lr", lr)
        if not isinstance(betas, (tuple, list, np.ndarray)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1, beta2 = (_real(f"betas[{k}]", b) for k, b in enumerate(betas))
        for name, beta in (("betas[0]", beta1), ("betas[1]", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        self.betas = (beta1, beta2)
        self.eps = _check_positive("eps", eps)

    def _state_layout(self, weight: np.ndarray) -> dict[str, tuple[tuple, np.dtype]]:
        arithmetic = arithmetic_dtype(weight.dtype)
        return {
            "exp_avg": (weight.shape, arithmetic),
            "exp_avg_sq": (weight.shape, arithmetic),
            "step": ((), np.dtype(np.int64)),
        }

    def _update(self, weight: np.ndarray, gradient: tuple, state: dict[str, np.ndarray]) -> None:
        counter = state["step"]
        # Checked before the kernel runs: a counter that cannot be written after the table was
        # updated would leave the table one step ahead of the state.
        if counter.shape != () or counter.dtype != np.int64 or not counter.flags.writeable:
            raise ValueError(
                f"step must be a writeable 0-d int64 array, got shape {counter.shape}, dtype "
                f"{counter.dtype}, writeable={counter.flags.writeable}"
            )
        beta1, beta2 = self.betas
        step = int(counter) + 1
        step_size = self.lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        _core.adam_update(
            weight,
            gradient,
            step_size,
            beta1,
            beta2,
            self.eps,
            state["exp_avg"],
            state["exp_avg_sq"],
            self._rounding(state),
        )
        counter[...] = step
