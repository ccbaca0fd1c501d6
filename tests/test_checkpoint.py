"""Training checkpoints: ``layer.save(path, optimizer=opt)`` and ``Layer.load(path,
optimizer=opt)``; resuming gives bitwise what training straight through gives."""

from __future__ import annotations

import fastembed
import numpy as np
import pytest
from conftest import assert_bitwise_equal, make_table
from fastembed.optim import SGD, Adagrad, Adam

OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.1),
    "sgd-momentum": lambda: SGD(lr=0.05, momentum=0.9),
    "adagrad": lambda: Adagrad(lr=0.1),
    "adagrad-rowwise": lambda: Adagrad(lr=0.1, eps=1e-6, rowwise=True),
    "adam": lambda: Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-7),
}
LAYERS = [fastembed.Embedding, fastembed.EmbeddingBag]
V, D = 60, 5


def new_layer(layer_class, sparse: bool, dtype):
    table = make_table(V, D, dtype, np.random.default_rng(7))
    options = {"padding_idx": 3, "max_norm": 2.0, "sparse": sparse}
    if layer_class is fastembed.EmbeddingBag:
        options["mode"] = "mean"
    return layer_class(weight=table, **options)


def train(layer, optimizer, steps: range) -> None:
    """Step ``steps``: each step's batch depends on its number only."""
    for step in steps:
        rng = np.random.default_rng(1000 + step)
        ids = rng.integers(0, V, 24)
        if isinstance(layer, fastembed.EmbeddingBag):
            out = layer(ids, offsets=[0, 5, 5, 17])
        else:
            out = layer(ids.reshape(4, 6))
        grad = rng.standard_normal(out.shape).astype(layer.dtype)
        layer.backward(grad, optimizer=optimizer)


def assert_same_state_dict(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert_bitwise_equal(np.asarray(a[key]), np.asarray(b[key]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("layer_class", LAYERS)
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("name", ["ckpt.npz", "ckpt"])
def test_resume_equals_straight_through(name, optimizer, layer_class, sparse, dtype, tmp_path):
    straight, straight_opt = new_layer(layer_class, sparse, dtype), OPTIMIZERS[optimizer]()
    train(straight, straight_opt, range(8))

    first, first_opt = new_layer(layer_class, sparse, dtype), OPTIMIZERS[optimizer]()
    train(first, first_opt, range(3))
    saved_state = {key: np.copy(value) for key, value in first_opt.state_dict().items()}
    first.save(tmp_path / name, optimizer=first_opt)

    resumed_opt = OPTIMIZERS[optimizer]()
    resumed = layer_class.load(tmp_path / name, optimizer=resumed_opt)
    assert_same_state_dict(resumed_opt.state_dict(), saved_state)
    assert resumed._options() == first._options()
    train(resumed, resumed_opt, range(3, 8))

    assert_bitwise_equal(resumed.weight, straight.weight)
    assert_same_state_dict(resumed_opt.state_dict(), straight_opt.state_dict())


@pytest.mark.parametrize("layer_class", LAYERS)
def test_a_checkpoint_loaded_without_optimizer_is_the_table_and_options(layer_class, tmp_path):
    layer, opt = new_layer(layer_class, True, np.float32), Adam()
    train(layer, opt, range(2))
    layer.save(tmp_path / "c.npz", optimizer=opt)
    loaded = layer_class.load(tmp_path / "c.npz")
    assert_bitwise_equal(loaded.weight, layer.weight)
    assert loaded._options() == layer._options()
    mapped = layer_class.load(tmp_path / "c.npz", mmap_mode="c", optimizer=Adam())
    assert isinstance(mapped.weight, np.memmap)


def test_a_checkpoint_before_any_step(tmp_path):
    layer, opt = new_layer(fastembed.Embedding, False, np.float32), Adagrad(lr=0.2)
    layer.save(tmp_path / "c.npz", optimizer=opt)
    restored = Adagrad(lr=0.2)
    fastembed.Embedding.load(tmp_path / "c.npz", optimizer=restored)
    assert_same_state_dict(restored.state_dict(), opt.state_dict())


def test_loaded_layers_join_an_optimizer_as_its_next_tables(tmp_path):
    layers = [new_layer(fastembed.Embedding, False, np.float64) for _ in range(2)]
    opt = Adam(lr=0.05)
    for layer in layers:
        train(layer, opt, range(2))
    for index, layer in enumerate(layers):
        layer.save(tmp_path / f"{index}.npz", optimizer=opt)
    restored = Adam(lr=0.05)
    for index in range(2):
        fastembed.Embedding.load(tmp_path / f"{index}.npz", optimizer=restored)
    assert_same_state_dict(restored.state_dict(), opt.state_dict())


@pytest.mark.parametrize(
    ("saved", "given", "match"),
    [
        (
            lambda: Adam(),
            lambda: SGD(lr=0.1),
            "holds Adam optimizer state, the optimizer given is SGD",
        ),
        (lambda: Adam(lr=0.01), lambda: Adam(lr=0.02), "lr=0.01, this optimizer has lr=0.02"),
        (
            lambda: Adam(betas=(0.9, 0.99)),
            lambda: Adam(betas=(0.9, 0.999)),
            r"betas=\(0.9, 0.99\)",
        ),
        (lambda: Adagrad(rowwise=True), lambda: Adagrad(), "rowwise=True"),
        (lambda: SGD(lr=0.1, momentum=0.5), lambda: SGD(lr=0.1), "momentum=0.5"),
    ],
)
def test_another_optimizer_is_refused_naming_what_differs(saved, given, match, tmp_path):
    layer, opt = new_layer(fastembed.Embedding, False, np.float32), saved()
    train(layer, opt, range(1))
    layer.save(tmp_path / "c.npz", optimizer=opt)
    other = given()
    with pytest.raises(ValueError, match=f"c.npz: .*{match}"):
        fastembed.Embedding.load(tmp_path / "c.npz", optimizer=other)
    assert other.state_dict().keys() == {*other.hyperparameters}  # nothing restored


@pytest.mark.parametrize("name", ["t.npz", "t.npy"])
def test_optimizer_for_a_file_without_state_is_refused(name, tmp_path):
    fastembed.Embedding(5, 2, seed=0).save(tmp_path / name)
    with pytest.raises(ValueError, match=f"{name} holds no optimizer state"):
        fastembed.Embedding.load(tmp_path / name, optimizer=SGD(lr=0.1))


def test_a_layer_file_of_the_other_class_is_refused(tmp_path):
    fastembed.EmbeddingBag(5, 2, mode="max", seed=0).save(tmp_path / "bag.npz")
    with pytest.raises(ValueError, match="bag.npz holds an EmbeddingBag layer, not an Embedding"):
        fastembed.Embedding.load(tmp_path / "bag.npz")
    fastembed.Embedding(5, 2, seed=0).save(tmp_path / "emb.npz")
    with pytest.raises(ValueError, match="holds an Embedding layer, not an EmbeddingBag"):
        fastembed.EmbeddingBag.load(tmp_path / "emb.npz")


@pytest.mark.parametrize("name", ["b.npz", "b.npy"])
@pytest.mark.parametrize("mmap_mode", [None, "r", "c"])
def test_embedding_bag_save_and_load_round_trip(name, mmap_mode, tmp_path):
    bag = fastembed.EmbeddingBag(
        weight=make_table(30, 4, np.float64, np.random.default_rng(1)),
        mode="max",
        padding_idx=-1,
        sparse=True,
        include_last_offset=True,
        max_norm=9.0,
        norm_type=1.0,
        trainable=False,
    )
    bag.save(tmp_path / name)
    loaded = fastembed.EmbeddingBag.load(tmp_path / name, mmap_mode=mmap_mode)
    assert_bitwise_equal(np.asarray(loaded.weight), bag.weight)
    assert loaded._options() == bag._options()
    assert loaded.padding_idx == 29
    ids, offsets = np.array([1, 2, 29, 4]), np.array([0, 3, 4])
    assert_bitwise_equal(loaded(ids, offsets), bag(ids, offsets))
