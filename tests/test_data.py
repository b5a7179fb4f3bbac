"""Tests for advrobust.data: shapes, ranges, determinism, stratification, noise, file formats."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advrobust.errors import UserError

from advrobust.jsonio import to_json
from advrobust.data import DATASETS, Dataset, _stratified_indices, load_dataset, split

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------- helpers
def _check_common(ds: Dataset) -> None:
    m = ds.meta
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert torch.isfinite(x).all()
        assert list(x.shape[1:]) == m["input_shape"]
    for y in (ds.y_train, ds.y_train_clean, ds.y_test):
        assert y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) < m["classes"]
    assert ds.noisy_mask.dtype == torch.bool
    assert len(ds.x_train) == len(ds.y_train) == len(ds.noisy_mask) == m["n"]
    assert len(ds.x_test) == len(ds.y_test) == m["n_test"]
    assert m["d"] == int(np.prod(m["input_shape"]))
    assert torch.equal(ds.noisy_mask, ds.y_train != ds.y_train_clean)
    assert m["noisy"] == int(ds.noisy_mask.sum())
    json.loads(to_json(m))  # strict JSON, as run.json stores it


def _same(a: Dataset, b: Dataset) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f))
               for f in ("x_train", "y_train", "y_train_clean", "noisy_mask", "x_test", "y_test"))


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_idx_set(folder: Path, *, gz: bool, n_train: int = 60, n_test: int = 20, side: int = 6,
                   seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, size=(n_train, side, side), dtype=np.uint8),
        IDX_NAMES[1]: np.arange(n_train, dtype=np.uint8) % 10,
        IDX_NAMES[2]: rng.integers(0, 256, size=(n_test, side, side), dtype=np.uint8),
        IDX_NAMES[3]: np.arange(n_test, dtype=np.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def _write_cifar(folder: Path, *, per_batch: int = 10, protocol: int = pickle.DEFAULT_PROTOCOL) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        data = np.empty((per_batch, 3072), dtype=np.uint8)
        data[:, :1024] = 10 + i  # red plane
        data[:, 1024:2048] = 100 + i  # green plane
        data[:, 2048:] = 200 + i  # blue plane
        data[:, 5] = np.arange(per_batch)  # pixel (0, 5) of the red plane tells rows apart
        labels = [int(v) for v in np.arange(per_batch) % 10]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{j}.png".encode() for j in range(per_batch)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
        out[name] = (data, labels)
    return out


# --------------------------------------------------------------------------- digits
def test_digits_default_shapes_range_and_fixed_test_set():
    ds = load_dataset()
    _check_common(ds)
    assert ds.meta["name"] == "digits" and ds.meta["classes"] == 10
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.d == 64
    assert ds.meta["n"] + ds.meta["n_test"] == 1797
    assert 0.24 < ds.meta["n_test"] / 1797 < 0.26
    # pixel values are sklearn's 0..16 divided by 16, so every value is a multiple of 1/16
    assert torch.equal(ds.x_train * 16, (ds.x_train * 16).round())
    assert float(ds.x_train.max()) == 1.0
    # the train/test split does not depend on the seed and train and test do not overlap
    other = load_dataset(seed=5)
    assert torch.equal(ds.x_test, other.x_test) and torch.equal(ds.y_test, other.y_test)
    train_rows = {r.numpy().tobytes() for r in ds.x_train.flatten(1)}
    assert sum(r.numpy().tobytes() in train_rows for r in ds.x_test.flatten(1)) < 5  # only exact duplicate images
    assert split(ds, "train")[1] is ds.y_train and split(ds, "test")[0] is ds.x_test


def test_subset_is_stratified_and_deterministic_by_seed():
    a = load_dataset("digits", n=100, n_test=50, seed=1)
    _check_common(a)
    assert torch.bincount(a.y_train, minlength=10).tolist() == [10] * 10
    assert torch.bincount(a.y_test, minlength=10).tolist() == [5] * 10
    assert _same(a, load_dataset("digits", n=100, n_test=50, seed=1))
    b = load_dataset("digits", n=100, n_test=50, seed=2)
    assert not torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.x_test, b.x_test)  # the test subset is shared by all seeds
    # an uneven n: every class within one of its proportional share
    c = load_dataset("digits", n=37, seed=0)
    counts = torch.bincount(c.y_train, minlength=10)
    assert int(counts.sum()) == 37 and int(counts.max() - counts.min()) <= 1
    # a subset is drawn from the pool: each chosen image is one of the full training set's images
    full = {r.numpy().tobytes() for r in load_dataset("digits").x_train.flatten(1)}
    assert all(r.numpy().tobytes() in full for r in c.x_train.flatten(1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=80), st.data())
def test_stratified_indices_property(labels, data):
    y = np.array(labels)
    k = data.draw(st.integers(1, len(y)))
    idx = _stratified_indices(y, k, np.random.default_rng(data.draw(st.integers(0, 10))))
    assert len(idx) == k == len(np.unique(idx)) and np.all(np.diff(idx) > 0)
    classes, counts = np.unique(y, return_counts=True)
    got = np.array([(y[idx] == c).sum() for c in classes])
    share = k * counts / len(y)
    assert np.all(got >= np.floor(share)) and np.all(got <= np.ceil(share))


def test_label_noise_exact_and_clean_labels_kept():
    clean = load_dataset("digits", n=200, seed=4)
    noisy = load_dataset("digits", n=200, seed=4, label_noise=0.25)
    _check_common(noisy)
    assert noisy.meta["noisy"] == 50 and int(noisy.noisy_mask.sum()) == 50
    assert torch.equal(noisy.x_train, clean.x_train)  # noise never changes which points were drawn
    assert torch.equal(noisy.y_train_clean, clean.y_train)
    assert torch.all(noisy.y_train[noisy.noisy_mask] != noisy.y_train_clean[noisy.noisy_mask])
    assert torch.equal(noisy.y_train[~noisy.noisy_mask], noisy.y_train_clean[~noisy.noisy_mask])
    assert torch.equal(noisy.y_test, clean.y_test)
    # flipped labels go to many different classes, not a fixed permutation
    assert len(set(zip(noisy.y_train_clean[noisy.noisy_mask].tolist(), noisy.y_train[noisy.noisy_mask].tolist()))) > 20
    assert clean.meta["noisy"] == 0 and not clean.noisy_mask.any()
    assert not torch.equal(noisy.noisy_mask, load_dataset("digits", n=200, seed=5, label_noise=0.25).noisy_mask)


def test_resize_area_average_and_d():
    base = load_dataset("digits", n=30, n_test=10)
    small = load_dataset("digits", n=30, n_test=10, resize=4)
    _check_common(small)
    assert small.meta["d"] == 16 and small.meta["input_shape"] == [1, 4, 4]
    blocks = base.x_train.reshape(30, 1, 4, 2, 4, 2).mean(dim=(3, 5))  # 2x2 block means
    torch.testing.assert_close(small.x_train, blocks)
    assert torch.equal(small.y_train, base.y_train)
    odd = load_dataset("digits", n=30, n_test=10, resize=3)
    assert odd.meta["d"] == 9
    _check_common(odd)


def test_classes_restricts_real_labels():
    ds = load_dataset("digits", classes=2, n=40, n_test=20, label_noise=0.1)
    _check_common(ds)
    assert set(ds.y_train_clean.tolist()) == {0, 1} and set(ds.y_test.tolist()) == {0, 1}
    assert set(ds.y_train.tolist()) <= {0, 1}  # flipped labels stay within the kept classes
    assert ds.meta["classes"] == 2 and ds.meta["noisy"] == 4


def test_rebuild_from_spec_bit_for_bit():
    for kwargs in ({"name": "digits", "n": 50, "label_noise": 0.2, "seed": 3, "resize": 4},
                   {"name": "sphere", "n": 40, "dim": 7, "labels": "teacher", "flip": 0.1, "seed": 2}):
        ds = load_dataset(**kwargs)
        spec = json.loads(to_json(ds.meta["spec"]))
        assert _same(ds, load_dataset(**spec))


# --------------------------------------------------------------------------- synthetic
def test_sphere_points_on_embedded_sphere():
    ds = load_dataset("sphere", n=300, n_test=100, dim=16, seed=3)
    _check_common(ds)
    r = ds.meta["scale"]
    assert r == 0.5 and ds.x_train.shape == (300, 16) and ds.meta["input_shape"] == [16]
    radii = (ds.x_train.double() - 0.5).norm(dim=1)
    torch.testing.assert_close(radii, torch.full_like(radii, r), atol=1e-6, rtol=0)
    assert abs(ds.meta["mean_l2_centered"] - r) < 1e-6
    # uniform on the sphere: the mean direction is near 0 (|mean z| ~ 1/sqrt(n))
    z = (ds.x_train.double() - 0.5) / r
    assert float(z.mean(0).norm()) < 4 / np.sqrt(300)
    assert not torch.equal(ds.x_train, load_dataset("sphere", n=300, n_test=100, dim=16, seed=4).x_train)
    # random labels: both classes present, about half each
    assert 0.35 < float(ds.y_train.float().mean()) < 0.65


def test_gaussian_scale_and_clipping_documented():
    ds = load_dataset("gaussian", n=400, dim=64, seed=0)
    _check_common(ds)
    assert ds.meta["scale"] == 0.5 and ds.meta["clipped"] == 0
    assert abs(ds.meta["mean_l2_centered"] - 0.5) < 0.03  # ||z|| concentrates at 1 for N(0, I/d)
    low = load_dataset("gaussian", n=400, dim=4, seed=0)
    _check_common(low)
    assert low.meta["scale"] == pytest.approx(0.25)  # sqrt(4)/8 keeps 4 standard deviations inside


def test_teacher_labels_are_linear_and_flip_is_exact():
    ds = load_dataset("sphere", n=256, n_test=256, dim=8, labels="teacher", seed=1)
    x, xt = ds.x_train.double().numpy(), ds.x_test.double().numpy()
    feats = np.c_[x - 0.5, np.ones(len(x))]
    w, *_ = np.linalg.lstsq(feats, 2.0 * ds.y_train.numpy() - 1, rcond=None)
    acc = float(((np.c_[xt - 0.5, np.ones(len(xt))] @ w > 0) == ds.y_test.numpy().astype(bool)).mean())
    assert acc > 0.85  # a linear rule learned from train predicts the teacher's test labels
    rnd = load_dataset("sphere", n=256, n_test=256, dim=8, labels="random", seed=1)
    w2, *_ = np.linalg.lstsq(feats, 2.0 * rnd.y_train.numpy() - 1, rcond=None)
    acc2 = float(((np.c_[xt - 0.5, np.ones(len(xt))] @ w2 > 0) == rnd.y_test.numpy().astype(bool)).mean())
    assert acc2 < 0.65  # pure noise labels cannot be predicted
    flipped = load_dataset("sphere", n=256, n_test=256, dim=8, labels="teacher", flip=0.2, seed=1)
    assert torch.equal(flipped.x_train, ds.x_train)
    assert int((flipped.y_train_clean != ds.y_train_clean).sum()) == round(0.2 * 256)
    assert int((flipped.y_test != ds.y_test).sum()) == round(0.2 * 256)
    assert flipped.meta["noisy"] == 0  # flip is part of the distribution, not training noise
    multi = load_dataset("gaussian", n=100, classes=5, labels="teacher", label_noise=0.1)
    _check_common(multi)
    assert multi.meta["classes"] == 5 and len(set(multi.y_train_clean.tolist())) == 5


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, words", [
    ({"name": "imagenet"}, ["unknown data set", "digits"]),
    ({"n": 0}, ["n must be"]),
    ({"n": -3}, ["n must be"]),
    ({"n": 2.5}, ["n must be"]),
    ({"n_test": 0}, ["n_test"]),
    ({"n": 5000}, ["n=5000", "use n <="]),
    ({"n_test": 1000}, ["n_test=1000"]),
    ({"label_noise": 1.0}, ["label_noise", "[0, 1)"]),
    ({"label_noise": -0.1}, ["label_noise"]),
    ({"seed": -1}, ["seed"]),
    ({"resize": 9}, ["resize=9", "downsamples"]),
    ({"resize": 0}, ["resize"]),
    ({"classes": 11}, ["classes=11"]),
    ({"dim": 10}, ["dim", "resize"]),
    ({"labels": "teacher"}, ["labels", "label_noise"]),
    ({"data_dir": "/tmp"}, ["data_dir"]),
    ({"name": "sphere", "resize": 4}, ["resize", "dim"]),
    ({"name": "sphere", "dim": 0}, ["dim"]),
    ({"name": "sphere", "labels": "nope"}, ["unknown labels"]),
    ({"name": "sphere", "flip": 0.1}, ["flip", "teacher"]),
    ({"name": "gaussian", "classes": 1}, ["classes"]),
    ({"name": "mnist"}, ["data_dir", "train-images-idx3-ubyte"]),
    ({"name": "cifar10"}, ["data_dir", "data_batch_1"]),
])
def test_user_errors_are_one_line(kwargs, words):
    with pytest.raises(UserError) as info:
        load_dataset(**kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_split_unknown_name():
    with pytest.raises(UserError, match="train or test"):
        split(load_dataset("sphere", n=4, n_test=4), "val")


def test_names_and_aliases():
    assert set(DATASETS) == {"digits", "sphere", "gaussian", "mnist", "fashion-mnist", "cifar10"}
    assert load_dataset("Sphere", n=3, n_test=3).meta["name"] == "sphere"


# --------------------------------------------------------------------------- IDX files
@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_load(tmp_path, gz):
    arrays = _write_idx_set(tmp_path, gz=gz)
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    _check_common(ds)
    assert ds.x_train.shape == (60, 1, 6, 6) and ds.x_test.shape == (20, 1, 6, 6)
    torch.testing.assert_close(ds.x_train[:, 0], torch.from_numpy(arrays[IDX_NAMES[0]]).float() / 255)
    assert ds.y_train.tolist() == arrays[IDX_NAMES[1]].tolist()
    assert ds.y_test.tolist() == arrays[IDX_NAMES[3]].tolist()
    sub = load_dataset("mnist", data_dir=str(tmp_path), n=20, n_test=10, resize=3, seed=1)
    _check_common(sub)
    assert torch.bincount(sub.y_train, minlength=10).tolist() == [2] * 10 and sub.meta["d"] == 9
    fm = load_dataset("fashion-mnist", data_dir=str(tmp_path), n=10)
    assert fm.meta["name"] == "fashion-mnist" and fm.meta["source"] == str(tmp_path)


def test_idx_file_changed_on_disk_is_reread(tmp_path):
    _write_idx_set(tmp_path, gz=False, seed=0)
    first = load_dataset("mnist", data_dir=str(tmp_path)).x_train.clone()
    arrays = _write_idx_set(tmp_path, gz=False, seed=1, n_train=70)
    second = load_dataset("mnist", data_dir=str(tmp_path))
    assert second.meta["n"] == 70 and not torch.equal(first, second.x_train[:60])
    torch.testing.assert_close(second.x_train[:, 0], torch.from_numpy(arrays[IDX_NAMES[0]]).float() / 255)


@pytest.mark.parametrize("damage, words", [
    ("missing", ["missing", "t10k-labels-idx1-ubyte"]),
    ("magic", ["train-images-idx3-ubyte", "magic"]),
    ("dtype", ["train-images-idx3-ubyte", "0x0d", "unsigned bytes"]),
    ("truncated", ["train-images-idx3-ubyte", "truncated"]),
    ("trailing", ["train-images-idx3-ubyte", "trailing"]),
    ("badgzip", ["train-images-idx3-ubyte.gz", "decompress"]),
    ("count", ["train-labels-idx1-ubyte", "do not match"]),
    ("label", ["label 200"]),
])
def test_idx_malformed_files(tmp_path, damage, words):
    _write_idx_set(tmp_path, gz=False)
    img = tmp_path / IDX_NAMES[0]
    if damage == "missing":
        (tmp_path / IDX_NAMES[3]).unlink()
    elif damage == "magic":
        img.write_bytes(b"\x12\x34" + img.read_bytes()[2:])
    elif damage == "dtype":
        raw = bytearray(img.read_bytes())
        raw[2] = 0x0D  # float32 code
        img.write_bytes(bytes(raw))
    elif damage == "truncated":
        img.write_bytes(img.read_bytes()[:-7])
    elif damage == "trailing":
        img.write_bytes(img.read_bytes() + b"\x00")
    elif damage == "badgzip":
        img.unlink()
        (tmp_path / (IDX_NAMES[0] + ".gz")).write_bytes(b"\x1f\x8bnot really gzip")
    elif damage == "count":
        (tmp_path / IDX_NAMES[1]).write_bytes(_idx_bytes(np.zeros(59, dtype=np.uint8)))
    elif damage == "label":
        (tmp_path / IDX_NAMES[1]).write_bytes(_idx_bytes(np.full(60, 200, dtype=np.uint8)))
    with pytest.raises(UserError) as info:
        load_dataset("mnist", data_dir=str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_idx_missing_directory_names_expected_files(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "nope"))
    assert "not found" in str(info.value) and "train-images-idx3-ubyte" in str(info.value)


# --------------------------------------------------------------------------- CIFAR-10 pickles
@pytest.mark.parametrize("layout, protocol", [("subdir", pickle.DEFAULT_PROTOCOL), ("flat", 2), ("flat", 5)])
def test_cifar_batches_load(tmp_path, layout, protocol):
    folder = tmp_path / "cifar-10-batches-py" if layout == "subdir" else tmp_path
    written = _write_cifar(folder, protocol=protocol)
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    _check_common(ds)
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    # channel planes in order R, G, B; batches concatenated in order 1..5
    assert torch.allclose(ds.x_train[10:20, 1], torch.tensor(101 / 255))
    assert torch.allclose(ds.x_test[:, 2], torch.tensor(205 / 255))
    assert ds.x_train[:10, 0, 0, 5].mul(255).round().tolist() == list(range(10))
    assert ds.y_train.tolist() == sum((written[f"data_batch_{j}"][1] for j in range(1, 6)), [])
    sub = load_dataset("cifar10", data_dir=str(tmp_path), n=20, n_test=10, resize=8)
    _check_common(sub)
    assert sub.meta["d"] == 3 * 8 * 8 and torch.bincount(sub.y_train, minlength=10).tolist() == [2] * 10


class _Evil:
    """Unpickling this runs a shell command that creates ``marker``, unless the loader refuses."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload, words", [
    ("evil", ["refusing", "system"]),
    ({b"data": np.zeros((2, 3072), np.float64), b"labels": [0, 1]}, ["uint8"]),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, ["3072"]),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, ["labels"]),
    ({b"labels": [0]}, ["data"]),
    ([1, 2, 3], ["dict"]),
    ("truncate", ["test_batch", "truncated"]),
])
def test_cifar_unsafe_or_malformed_batches(tmp_path, payload, words):
    _write_cifar(tmp_path)
    target = tmp_path / "test_batch"
    marker = tmp_path / "pwned"
    if payload == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif payload == "evil":
        target.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1],
                                         b"x": _Evil(marker)}))
    else:
        target.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError) as info:
        load_dataset("cifar10", data_dir=str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and "test_batch" in msg
    for w in words:
        assert w in msg
    assert not marker.exists()  # nothing from the file was executed


def _py2_cifar_pickle(data: np.ndarray, labels: list) -> bytes:
    """A batch byte for byte as Python 2's cPickle wrote the real CIFAR-10 files (protocol 2,
    ``str`` values, ``numpy.core.multiarray._reconstruct``), which Python 3 cannot produce."""
    def short_str(b: bytes) -> bytes:  # SHORT_BINSTRING
        return b"U" + bytes([len(b)]) + b

    n = data.shape[0]
    out = b"\x80\x02}(" + short_str(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short_str(b"b") + b"\x87R"
    out += b"(K\x01M" + struct.pack("<H", n) + b"M" + struct.pack("<H", 3072) + b"\x86"  # version, shape
    out += b"cnumpy\ndtype\n" + short_str(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + short_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # dtype state
    out += b"\x89T" + struct.pack("<i", data.nbytes) + data.tobytes() + b"tb"  # not fortran, raw bytes
    out += short_str(b"labels") + b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"eu."
    return out


def test_cifar_python2_pickles_load(tmp_path):
    written = _write_cifar(tmp_path)
    for name, (data, labels) in written.items():
        (tmp_path / name).write_bytes(_py2_cifar_pickle(data, labels))
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    _check_common(ds)
    expected = np.concatenate([written[f"data_batch_{j}"][0] for j in range(1, 6)])
    assert torch.equal(ds.x_train.mul(255).round().to(torch.uint8).flatten(1), torch.from_numpy(expected))
    assert ds.y_test.tolist() == written["test_batch"][1]


def test_cifar_missing_batch_names_expected_files(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError) as info:
        load_dataset("cifar10", data_dir=str(tmp_path))
    msg = str(info.value)
    assert "data_batch_3" in msg and "cifar-10-batches-py" in msg and "test_batch" in msg


# --------------------------------------------------------------------------- real Fashion-MNIST
def test_fashion_mnist_real_subset_is_learnable():
    if not FASHION_DIR.is_dir():
        pytest.skip(f"{FASHION_DIR} absent (Debian package dataset-fashion-mnist)")
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("fashion-mnist", n=500, n_test=1000, resize=14, seed=0)
    _check_common(ds)
    assert ds.meta["pool_train"] == 60000 and ds.meta["pool_test"] == 10000
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [50] * 10
    clf = LogisticRegression(max_iter=300, C=1.0)
    clf.fit(ds.x_train.flatten(1).numpy(), ds.y_train.numpy())
    acc = clf.score(ds.x_test.flatten(1).numpy(), ds.y_test.numpy())
    assert acc > 0.6, acc
    # labels really belong to the images: shuffling them destroys the signal
    shuffled = np.random.default_rng(0).permutation(ds.y_train.numpy())
    clf2 = LogisticRegression(max_iter=300, C=1.0).fit(ds.x_train.flatten(1).numpy(), shuffled)
    assert clf2.score(ds.x_test.flatten(1).numpy(), ds.y_test.numpy()) < 0.3
