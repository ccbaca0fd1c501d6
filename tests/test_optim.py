"""Fused sparse optimizers: NumPy formulas always, PyTorch's sparse optimizers where importable.

The NumPy reference sums each touched row's gradient with np.add.at in float64, then applies the
textbook update to the touched rows only.
"""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal, make_ids, make_table, raises_leaving_untouched
from fastembed import optim

V, D = 80, 6


def touched_sums(grad_output, ids, num_embeddings, padding_idx=None):
    """(touched ids, their summed gradient in float64), padding left out."""
    ids = np.asarray(ids).reshape(-1)
    sums = np.zeros((num_embeddings, grad_output.shape[-1]))
    np.add.at(sums, ids, grad_output.reshape(len(ids), -1).astype(np.float64))
    touched = np.unique(ids)
    touched = touched[touched != padding_idx]
    return touched, sums[touched]


class NumpySGD:
    def __init__(self, lr, momentum=0.0):
        self.lr, self.momentum, self.buf = lr, momentum, None

    def step(self, w, rows, g):
        if self.buf is None:
            self.buf = np.zeros_like(w)
        if self.momentum:
            self.buf[rows] = self.momentum * self.buf[rows] + g
            g = self.buf[rows]
        w[rows] -= self.lr * g


class NumpyAdagrad:
    def __init__(self, lr, eps=1e-10, rowwise=False):
        self.lr, self.eps, self.rowwise, self.acc = lr, eps, rowwise, None

    def step(self, w, rows, g):
        if self.acc is None:
            self.acc = np.zeros(w.shape[:1] if self.rowwise else w.shape)
        if self.rowwise:
            self.acc[rows] += (g**2).mean(axis=1)
            w[rows] -= self.lr * g / (np.sqrt(self.acc[rows])[:, None] + self.eps)
        else:
            self.acc[rows] += g**2
            w[rows] -= self.lr * g / (np.sqrt(self.acc[rows]) + self.eps)


class NumpyAdam:
    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr, (self.b1, self.b2), self.eps, self.t, self.m, self.v = (
            lr,
            betas,
            eps,
            0,
            None,
            None,
        )

    def step(self, w, rows, g):
        if self.m is None:
            self.m, self.v = np.zeros_like(w), np.zeros_like(w)
        self.t += 1
        self.m[rows] = self.b1 * self.m[rows] + (1 - self.b1) * g
        self.v[rows] = self.b2 * self.v[rows] + (1 - self.b2) * g**2
        m_hat = self.m[rows] / (1 - self.b1**self.t)
        v_hat = self.v[rows] / (1 - self.b2**self.t)
        # SparseAdam's form: eps is added to sqrt(v) before the bias correction of v
        w[rows] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps / np.sqrt(1 - self.b2**self.t))


OPTIMIZERS = {
    "sgd": (lambda: optim.SGD(0.1), lambda: NumpySGD(0.1)),
    "sgd-momentum": (lambda: optim.SGD(0.05, momentum=0.9), lambda: NumpySGD(0.05, 0.9)),
    "adagrad": (lambda: optim.Adagrad(0.1), lambda: NumpyAdagrad(0.1)),
    "adagrad-rowwise": (
        lambda: optim.Adagrad(0.1, rowwise=True),
        lambda: NumpyAdagrad(0.1, rowwise=True),
    ),
    "adam": (lambda: optim.Adam(0.01), lambda: NumpyAdam(0.01)),
}


def batches(rng, steps, shape=(25, 4)):
    """(ids, grad_output) pairs; ids confined to the lower half so some rows stay untouched."""
    for _ in range(steps):
        ids = rng.integers(0, V // 2, shape)
        yield ids, rng.standard_normal((*shape, D))


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_matches_numpy_formula(rng, name, dtype):
    make_ours, make_reference = OPTIMIZERS[name]
    weight = make_table(V, D, dtype, rng)
    expected = weight.astype(np.float64)
    emb, opt, reference = fastembed.Embedding(weight=weight), make_ours(), make_reference()
    for ids, grad in batches(rng, 6):
        emb(ids)
        assert emb.backward(grad.astype(dtype), optimizer=opt) is None
        reference.step(expected, *touched_sums(grad.astype(dtype), ids, V))
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(emb.weight, expected, rtol=tolerance, atol=tolerance)
    assert emb.grad is None
    untouched = np.setdiff1d(np.arange(V), np.arange(V // 2))
    assert_bitwise_equal(emb.weight[untouched], weight[untouched])


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bag_matches_dense_gradient_then_numpy_update(rng, name, mode):
    """A fused step on a bag equals the update applied to the bag's own dense gradient."""
    make_ours, make_reference = OPTIMIZERS[name]
    weight = make_table(V, D, np.float64, rng)
    bag = fastembed.EmbeddingBag(weight=weight.copy(), mode=mode, padding_idx=3)
    opt, reference, expected = make_ours(), make_reference(), weight.copy()
    for _ in range(4):
        ids = rng.integers(0, V // 2, 300)
        ids[::7] = 3
        offsets = np.sort(rng.integers(0, 300, 30))
        offsets[0] = 0
        psw = rng.standard_normal(300) if mode == "sum" else None
        grad = rng.standard_normal((30, D))
        dense_bag = fastembed.EmbeddingBag(weight=expected.copy(), mode=mode, padding_idx=3)
        dense_bag(ids, offsets, per_sample_weights=psw)
        dense = dense_bag.backward(grad)
        if mode == "max":  # the rows that gave a maximum
            touched = np.flatnonzero(np.any(dense != 0, axis=1))
        else:
            touched = np.setdiff1d(np.unique(ids), [3])
        bag(ids, offsets, per_sample_weights=psw)
        bag.backward(grad, optimizer=opt)
        reference.step(expected, touched, dense[touched])
    np.testing.assert_allclose(bag.weight, expected, rtol=1e-10, atol=1e-10)
    assert_bitwise_equal(bag.weight[3], weight[3])  # the padding row is never updated


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_identical_across_thread_counts(rng, restore_num_threads, name):
    make_ours, _ = OPTIMIZERS[name]
    weight = make_table(3_000, 16, np.float32, rng)
    steps = [
        (make_ids(distribution, 40_000, 3_000, rng), rng.standard_normal((40_000, 16), np.float32))
        for distribution in ("uniform", "heavy", "zipf")
    ]
    results = []
    for threads in (1, 2, 5):
        fastembed.set_num_threads(threads)
        emb, opt = fastembed.Embedding(weight=weight.copy()), make_ours()
        for ids, grad in steps:
            emb(ids)
            emb.backward(grad, optimizer=opt)
        results.append((emb.weight, opt.state_dict()))
    for weight_after, state in results[1:]:
        assert_bitwise_equal(weight_after, results[0][0])
        for key, value in state.items():
            assert_bitwise_equal(np.asarray(value), np.asarray(results[0][1][key]))


def test_step_is_the_same_as_backward_with_optimizer(rng):
    weight = make_table(V, D, np.float32, rng)
    first, second = fastembed.Embedding(weight=weight.copy()), fastembed.Embedding(weight=weight)
    opt_a, opt_b = optim.Adam(0.01), optim.Adam(0.01)
    for ids, grad in batches(rng, 3):
        grad = grad.astype(np.float32)
        first(ids)
        first.backward(grad, optimizer=opt_a)
        second(ids)
        opt_b.step(second, grad)
    assert_bitwise_equal(first.weight, second.weight)


def test_embedding_options_apply(rng):
    """padding_idx and scale_grad_by_freq shape the gradient an optimizer sees."""
    weight = make_table(V, D, np.float64, rng)
    emb = fastembed.Embedding(weight=weight.copy(), padding_idx=5, scale_grad_by_freq=True)
    ids = rng.integers(0, 10, 50)
    grad = rng.standard_normal((50, D))
    emb(ids)
    emb.backward(grad, optimizer=optim.SGD(1.0))
    rows, sums = touched_sums(grad, ids, V, padding_idx=5)
    expected = weight.copy()
    expected[rows] -= sums / np.bincount(ids, minlength=V)[rows, None]
    np.testing.assert_allclose(emb.weight, expected, rtol=1e-12, atol=1e-12)
    assert_bitwise_equal(emb.weight[5], weight[5])


# --- PyTorch parity ------------------------------------------------------------------------

TORCH_OPTIMIZERS = {
    "sgd": (lambda: optim.SGD(0.1), lambda torch, p: torch.optim.SGD(p, lr=0.1)),
    "adagrad": (lambda: optim.Adagrad(0.1), lambda torch, p: torch.optim.Adagrad(p, lr=0.1)),
    "adam": (lambda: optim.Adam(0.01), lambda torch, p: torch.optim.SparseAdam(p, lr=0.01)),
}


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_embedding_matches_torch_sparse(rng, name):
    torch = pytest.importorskip("torch")
    make_ours, make_theirs = TORCH_OPTIMIZERS[name]
    weight = make_table(V, D, np.float32, rng)
    emb, opt = fastembed.Embedding(weight=weight.copy()), make_ours()
    module = torch.nn.Embedding(V, D, sparse=True)
    module.weight.data.copy_(torch.from_numpy(weight))
    theirs = make_theirs(torch, list(module.parameters()))
    for ids, grad in batches(rng, 8):
        grad = grad.astype(np.float32)
        emb(ids)
        emb.backward(grad, optimizer=opt)
        theirs.zero_grad()
        module(torch.from_numpy(ids)).backward(torch.from_numpy(grad))
        theirs.step()
    np.testing.assert_allclose(emb.weight, module.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_bag_matches_torch_sparse(rng, name, mode):
    torch = pytest.importorskip("torch")
    make_ours, make_theirs = TORCH_OPTIMIZERS[name]
    weight = make_table(V, D, np.float32, rng)
    bag, opt = fastembed.EmbeddingBag(weight=weight.copy(), mode=mode, padding_idx=2), make_ours()
    module = torch.nn.EmbeddingBag(V, D, mode=mode, sparse=True, padding_idx=2)
    module.weight.data.copy_(torch.from_numpy(weight))
    theirs = make_theirs(torch, list(module.parameters()))
    for _ in range(6):
        ids = rng.integers(0, V // 2, 200)
        offsets = np.sort(rng.integers(0, 200, 20))
        offsets[0] = 0
        psw = rng.standard_normal(200).astype(np.float32) if mode == "sum" else None
        grad = rng.standard_normal((20, D)).astype(np.float32)
        bag(ids, offsets, per_sample_weights=psw)
        bag.backward(grad, optimizer=opt)
        theirs.zero_grad()
        psw_t = None if psw is None else torch.from_numpy(psw)
        out = module(torch.from_numpy(ids), torch.from_numpy(offsets), per_sample_weights=psw_t)
        out.backward(torch.from_numpy(grad))
        theirs.step()
    np.testing.assert_allclose(bag.weight, module.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


# --- errors leave everything untouched -----------------------------------------------------


def stepped(rng, opt, **layer_options):
    emb = fastembed.Embedding(weight=make_table(V, D, np.float32, rng), **layer_options)
    ids, grad = next(batches(rng, 1))
    emb(ids)
    emb.backward(grad.astype(np.float32), optimizer=opt)
    emb(ids)
    return emb, grad.astype(np.float32)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_read_only_or_frozen_table_is_refused(rng, name):
    opt = OPTIMIZERS[name][0]()
    emb, grad = stepped(rng, opt)
    state = opt.state_dict()
    emb.weight.flags.writeable = False
    with raises_leaving_untouched(ValueError, "read-only", emb.weight, *state.values()):
        emb.backward(grad, optimizer=opt)
    emb.weight.flags.writeable = True
    emb.trainable = False
    with raises_leaving_untouched(ValueError, "frozen", emb.weight, *state.values()):
        opt.step(emb, grad)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_bad_gradient_changes_nothing(rng, name):
    opt = OPTIMIZERS[name][0]()
    emb, grad = stepped(rng, opt)
    state = opt.state_dict()
    with raises_leaving_untouched(ValueError, "grad_output", emb.weight, *state.values()):
        emb.backward(grad[:-1], optimizer=opt)
    with raises_leaving_untouched(TypeError, "dtype", emb.weight, *state.values()):
        emb.backward(grad.astype(np.float64), optimizer=opt)


def test_out_of_range_id_changes_nothing(rng):
    opt = optim.Adam()
    emb, grad = stepped(rng, opt)
    emb._ids = emb._ids.copy()
    emb._ids.flat[-1] = V  # as if the table had shrunk since the forward
    state = opt.state_dict()
    with raises_leaving_untouched(IndexError, f"id {V}", emb.weight, *state.values()):
        opt.step(emb, grad)


def test_backward_needs_a_forward():
    with pytest.raises(RuntimeError, match="forward"):
        fastembed.Embedding(5, 2).backward(np.zeros((1, 2), np.float32), optimizer=optim.SGD(1))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: optim.SGD(0), "lr"),
        (lambda: optim.SGD(0.1, momentum=-1), "momentum"),
        (lambda: optim.Adagrad(-1), "lr"),
        (lambda: optim.Adam(betas=(1.0, 0.9)), "betas"),
        (lambda: optim.Adam(eps=0), "eps"),
    ],
)
def test_bad_hyperparameters(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


# --- state ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_saved_with_savez_resumes_exactly(rng, tmp_path, name):
    make_ours, _ = OPTIMIZERS[name]
    weight = make_table(V, D, np.float32, rng)
    data = [(ids, grad.astype(np.float32)) for ids, grad in batches(rng, 6)]

    straight, opt = fastembed.Embedding(weight=weight.copy()), make_ours()
    for ids, grad in data:
        straight(ids)
        straight.backward(grad, optimizer=opt)

    first, opt = fastembed.Embedding(weight=weight.copy()), make_ours()
    for ids, grad in data[:3]:
        first(ids)
        first.backward(grad, optimizer=opt)
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    resumed, opt = fastembed.Embedding(weight=first.weight.copy()), make_ours()
    opt.lr = 123.0  # restored from the file
    opt.load_state_dict(np.load(tmp_path / "opt.npz"))
    for ids, grad in data[3:]:
        resumed(ids)
        resumed.backward(grad, optimizer=opt)
    assert_bitwise_equal(resumed.weight, straight.weight)


def test_state_dict_layout_and_tables(rng):
    opt = optim.Adam(0.01)
    emb, _ = stepped(rng, opt)
    bag = fastembed.EmbeddingBag(weight=make_table(10, 3, np.float64, rng), mode="sum")
    bag([1, 2, 3], [0, 1])
    bag.backward(np.ones((2, 3)), optimizer=opt)
    state = opt.state_dict()
    assert set(state) == {
        "lr", "betas", "eps",
        "table0.exp_avg", "table0.exp_avg_sq", "table0.step",
        "table1.exp_avg", "table1.exp_avg_sq", "table1.step",
    }  # fmt: skip
    assert state["table0.exp_avg"].shape == (V, D) and state["table1.exp_avg"].dtype == np.float64
    assert int(state["table0.step"]) == 1 and opt.state(bag)["step"] == 1
    assert opt.state(fastembed.Embedding(2, 2)) == {}
    assert repr(opt) == "Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08)"
    rowwise = optim.Adagrad(rowwise=True)
    stepped(rng, rowwise)
    assert rowwise.state_dict()["table0.state_sum"].shape == (V,)


def test_load_state_dict_checks_shapes(rng):
    opt = optim.Adagrad()
    stepped(rng, opt)
    state = opt.state_dict()
    state["table0.state_sum"] = np.zeros((V + 1, D), np.float32)
    with pytest.raises(ValueError, match="state_sum"):
        opt.load_state_dict(state)
    with pytest.raises(ValueError, match="hyper-parameters"):
        optim.Adagrad().load_state_dict({"table0.state_sum": np.zeros(3)})
