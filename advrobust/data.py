"""Named data sets as tensors in [0, 1], with the metadata robustness measurements need.

Built in (no files needed):

``digits``
    scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), pixel values / 16,
    shape ``(N, 1, 8, 8)``. A fixed stratified split puts 1348 images in the training pool and 449
    in the test pool (a quarter); the split does not depend on ``seed``, so every run sees the same test set.
    The default data set everywhere.
``sphere``, ``gaussian``
    The law-of-robustness setting (Bubeck & Sellke, "A universal law of robustness via
    isoperimetry", NeurIPS 2021): ``n`` points ``z`` uniform on the unit sphere S^{d-1}, or drawn
    from N(0, I/d), embedded in the unit cube as ``x = 0.5 + r * z``. Labels are pure noise
    (``labels="random"``) or a random linear teacher ``argmax(W z)`` with a fraction ``flip`` of
    labels flipped. Shape ``(N, d)``.

From local files (nothing is downloaded):

``mnist``, ``fashion-mnist``
    The four IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``) in
    ``data_dir``. ``fashion-mnist`` defaults to ``/usr/share/datasets/fashion-mnist`` (the Debian
    package ``dataset-fashion-mnist``). Shape ``(N, 1, 28, 28)``.
``cifar10``
    The python pickle batches ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, in
    ``data_dir/cifar-10-batches-py/`` or directly in ``data_dir``. They are read with a restricted
    unpickler that builds only plain containers and uint8 numpy arrays: no code from the file runs.
    Shape ``(N, 3, 32, 32)``.

Every argument of :func:`load_dataset` is JSON-able and the result is a deterministic function of
them, so ``load_dataset(**run_json["spec"]["data"])`` rebuilds a run's data bit for bit.

Scale. The theory measures radii and Lipschitz constants for points of unit norm. Here every input
lives in [0, 1]^d, so the synthetic points are shrunk by ``r = meta["scale"]``: a radius measured
in data coordinates must be divided by ``r``, and a Lipschitz constant multiplied by ``r``, before
comparing with the theory's ``sqrt(n d / p)``.
"""
from __future__ import annotations

import functools
import gzip
import io
import numbers
import os
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError

DATASETS = ("digits", "sphere", "gaussian", "mnist", "fashion-mnist", "cifar10")
SYNTHETIC = ("sphere", "gaussian")
IMAGE_FILES = ("mnist", "fashion-mnist", "cifar10")

_ALIASES = {
    "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
    "cifar-10": "cifar10", "cifar_10": "cifar10",
}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
CIFAR_SUBDIR = "cifar-10-batches-py"

# Defaults of the synthetic setting: small enough to interpolate in seconds on a CPU.
SYNTHETIC_DIM = 32
SYNTHETIC_N = 256
SYNTHETIC_N_TEST = 256
SYNTHETIC_CLASSES = 2

# The digits train/test split is fixed once and for all (independent of ``seed``), as are the
# test subsets of every real data set, so runs that differ only in seed share one test set.
_DIGITS_TEST_FRACTION = 0.25
_FIXED_SPLIT_SEED = 20210901

# Independent random streams (numpy SeedSequence spawn keys), so that e.g. changing
# ``label_noise`` never changes which training points were drawn.
_STREAM_TRAIN_SUBSET = 1
_STREAM_TEST_SUBSET = 2
_STREAM_LABEL_NOISE = 3
_STREAM_X_TRAIN = 4
_STREAM_X_TEST = 5
_STREAM_TEACHER = 6
_STREAM_Y_TRAIN = 7
_STREAM_Y_TEST = 8
_STREAM_FLIP_TRAIN = 9
_STREAM_FLIP_TEST = 10


@dataclass
class Dataset:
    """A data set split into training and test tensors.

    Attributes
    ----------
    x_train, x_test : torch.Tensor
        float32 in [0, 1]; images ``(N, C, H, W)``, synthetic data ``(N, d)``.
    y_train : torch.Tensor
        int64 labels the model is trained on (after ``label_noise`` flips).
    y_train_clean : torch.Tensor
        int64 training labels before ``label_noise``.
    noisy_mask : torch.Tensor
        bool, ``True`` where ``y_train != y_train_clean``.
    y_test : torch.Tensor
        int64 test labels (never affected by ``label_noise``).
    meta : dict
        JSON-able description: name, n, n_test, d, input_shape, classes, label_noise, noisy,
        seed, scale, source, spec (the arguments that rebuild this data set) and more.
    """

    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    y_train_clean: torch.Tensor = field(repr=False)
    noisy_mask: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    meta: dict

    @property
    def d(self) -> int:
        """Input dimension C*H*W (or d)."""
        return int(self.meta["d"])

    @property
    def classes(self) -> int:
        return int(self.meta["classes"])

    @property
    def input_shape(self) -> list:
        """Shape of one input, e.g. ``[1, 8, 8]`` or ``[32]``."""
        return list(self.meta["input_shape"])

    def __repr__(self) -> str:
        m = self.meta
        return (f"Dataset({m['name']!r}, n={m['n']}, n_test={m['n_test']}, input_shape={m['input_shape']}, "
                f"classes={m['classes']}, noisy={m['noisy']}, seed={m['seed']})")


def split(ds: Dataset, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of one split.

    Parameters
    ----------
    ds : Dataset
    which : {"train", "test"}
        ``"train"`` returns the labels trained on (possibly flipped by label noise).

    Returns
    -------
    (x, y) : tuple of torch.Tensor
    """
    if which == "train":
        return ds.x_train, ds.y_train
    if which == "test":
        return ds.x_test, ds.y_test
    raise UserError(f"unknown split {which!r}; use train or test")


# --------------------------------------------------------------------------- argument checks
def _canonical_name(name: Any) -> str:
    if not isinstance(name, str):
        raise UserError(f"data set name must be a string, got {name!r}; use one of {', '.join(DATASETS)}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise UserError(f"unknown data set {name!r}; use one of {', '.join(DATASETS)}")
    return key


def _check_int(value: Any, what: str, *, minimum: int, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{what} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise UserError(f"{what} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 <= float(value) < 1.0):
        raise UserError(f"{what} must be a fraction in [0, 1), got {value!r}")
    return float(value)


def _rng(seed: int, stream: int) -> np.random.Generator:
    """A local generator for one named stream of one seed (never numpy's global state)."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


# --------------------------------------------------------------------------- public entry point
def load_dataset(name: str = "digits", *, n: int | None = None, n_test: int | None = None,
                 resize: int | None = None, label_noise: float = 0.0, seed: int = 0,
                 data_dir: str | None = None, dim: int | None = None, classes: int | None = None,
                 labels: str = "random", flip: float = 0.0) -> Dataset:
    """Load a named data set as float32 tensors in [0, 1].

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``digits`` (default), ``sphere``, ``gaussian``, ``mnist``,
        ``fashion-mnist``, ``cifar10``.
    n : int, optional
        Number of training points. Real data: a subset of the training pool, stratified by label
        and drawn by ``seed`` (default: the whole pool; more than the pool is an error).
        Synthetic data: the number of points drawn (default 256).
    n_test : int, optional
        Number of test points, stratified like ``n``. For real data the test subset does not
        depend on ``seed`` (so runs that differ in seed are scored on the same points).
        Synthetic default 256.
    resize : int, optional
        Images only: new side length (e.g. 28 -> 14), by area averaging, so d = C * resize**2.
        Only downsampling. For synthetic data use ``dim``.
    label_noise : float
        Fraction in [0, 1) of training labels replaced by a different class chosen uniformly at
        random; exactly ``round(label_noise * n)`` points are flipped. They are marked in
        ``noisy_mask`` and ``y_train_clean`` keeps the originals. Test labels are untouched.
    seed : int
        Seeds every random choice (subsets, noise, synthetic points) through local generators.
    data_dir : str, optional
        Folder holding the files of ``mnist``, ``fashion-mnist`` (default
        ``/usr/share/datasets/fashion-mnist``) or ``cifar10``. Not used by built-in data sets.
    dim : int, optional
        Synthetic only: the input dimension d (default 32).
    classes : int, optional
        Synthetic: number of classes (default 2). Real data: keep only labels ``0 .. classes-1``
        (e.g. ``classes=2`` on digits gives the binary task 0 vs 1); default all classes.
    labels : {"random", "teacher"}
        Synthetic only: pure noise labels independent of x, or ``argmax(W z)`` for a random
        Gaussian teacher matrix W drawn from ``seed``.
    flip : float
        Synthetic teacher labels only: fraction in [0, 1) of labels (train and test alike, part
        of the distribution) replaced by a different random class. ``label_noise`` then adds
        training-only noise on top.

    Returns
    -------
    Dataset
        ``meta["scale"]``: for synthetic data the radius ``r`` of the embedding
        ``x = 0.5 + r * z`` (the theory's unit of length: divide radii by ``r``, multiply
        Lipschitz constants by ``r``); for images the mean L2 norm of a training input.
        ``meta["mean_l2_centered"]`` is the mean of ``||x - 0.5||_2`` over training inputs.

    Raises
    ------
    UserError
        Unknown name, bad values, options that do not apply to the data set, missing or
        malformed files.
    """
    # Over half of this function is its docstring; the data sets are built by _synthetic and _real.
    key = _canonical_name(name)
    seed = _check_int(seed, "seed", minimum=0, allow_none=False)
    n = _check_int(n, "n", minimum=1)
    n_test = _check_int(n_test, "n_test", minimum=1)
    label_noise = _check_fraction(label_noise, "label_noise")
    flip = _check_fraction(flip, "flip")
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise UserError(f"data_dir must be a folder path, got {data_dir!r}")
        data_dir = os.fspath(data_dir)
    spec = {"name": name, "n": n, "n_test": n_test, "resize": resize, "label_noise": label_noise,
            "seed": seed, "data_dir": data_dir, "dim": dim, "classes": classes, "labels": labels,
            "flip": flip}
    if key in SYNTHETIC:
        if resize is not None:
            raise UserError(f"resize does not apply to synthetic data set {key!r}; set its dimension with dim")
        if data_dir is not None:
            raise UserError(f"data set {key!r} is generated, not read from files; drop data_dir")
        ds = _synthetic(key, n=n, n_test=n_test, dim=dim, classes=classes, labels=labels, flip=flip, seed=seed)
    else:
        if dim is not None:
            raise UserError(f"dim applies only to sphere and gaussian; for {key!r} change d with resize")
        if labels != "random" or flip != 0.0:
            raise UserError(f"labels and flip apply only to sphere and gaussian; for {key!r} use label_noise")
        if key == "digits" and data_dir is not None:
            raise UserError("digits is bundled with scikit-learn and reads no files; drop data_dir")
        ds = _real(key, n=n, n_test=n_test, resize=resize, classes=classes, seed=seed, data_dir=data_dir)
    _add_label_noise(ds, label_noise, seed)
    ds.meta["label_noise"] = label_noise
    ds.meta["seed"] = seed
    ds.meta["spec"] = spec
    return ds


# --------------------------------------------------------------------------- shared transforms
def _stratified_indices(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` indices into ``labels`` with class proportions as close as possible to the pool's.

    Each class gets ``floor(k * share)`` points; the remaining ones go to the classes with the
    largest remainders (ties broken at random). Returned sorted, i.e. in the pool's order.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = k * counts / counts.sum()
    alloc = np.floor(exact).astype(np.int64)
    rest = k - int(alloc.sum())
    if rest:
        order = np.lexsort((rng.random(len(classes)), -(exact - alloc)))
        alloc[order[:rest]] += 1
    picked = []
    for c, a in zip(classes, alloc):
        members = np.flatnonzero(labels == c)
        picked.append(rng.choice(members, size=int(a), replace=False))
    return np.sort(np.concatenate(picked))


def _add_label_noise(ds: Dataset, fraction: float, seed: int) -> None:
    """Flip exactly ``round(fraction * n)`` training labels to a different random class."""
    n, k = len(ds.y_train_clean), ds.meta["classes"]
    count = int(round(fraction * n))
    y = ds.y_train_clean.clone()
    mask = torch.zeros(n, dtype=torch.bool)
    if count:
        rng = _rng(seed, _STREAM_LABEL_NOISE)
        idx = rng.choice(n, size=count, replace=False)
        shift = rng.integers(1, k, size=count)  # 1..k-1: never the same class
        y_np = y.numpy()
        y_np[idx] = (y_np[idx] + shift) % k
        mask[torch.from_numpy(idx)] = True
    ds.y_train, ds.noisy_mask = y, mask
    ds.meta["noisy"] = int(mask.sum())


def _flip_labels(y: np.ndarray, fraction: float, classes: int, rng: np.random.Generator) -> int:
    count = int(round(fraction * len(y)))
    if count:
        idx = rng.choice(len(y), size=count, replace=False)
        y[idx] = (y[idx] + rng.integers(1, classes, size=count)) % classes
    return count


# --------------------------------------------------------------------------- synthetic data
def _synthetic(key: str, *, n, n_test, dim, classes, labels, flip, seed) -> Dataset:
    d = SYNTHETIC_DIM if dim is None else _check_int(dim, "dim", minimum=1, allow_none=False)
    k = SYNTHETIC_CLASSES if classes is None else _check_int(classes, "classes", minimum=2, allow_none=False)
    n = SYNTHETIC_N if n is None else n
    n_test = SYNTHETIC_N_TEST if n_test is None else n_test
    if labels not in ("random", "teacher"):
        raise UserError(f"unknown labels {labels!r}; use random (pure noise) or teacher (noisy linear teacher)")
    if labels == "random" and flip:
        raise UserError("flip applies to teacher labels only (random labels are pure noise already); "
                        "use labels='teacher' or drop flip")
    if key == "sphere":
        # |z_i| <= 1 on the unit sphere, so r = 0.5 keeps 0.5 + r z inside the cube exactly.
        r = 0.5
    else:
        # z ~ N(0, I/d): coordinates have std 1/sqrt(d). r = min(0.5, sqrt(d)/8) puts the cube's
        # faces at >= 4 standard deviations; the rare coordinates beyond are clamped (counted
        # in meta["clipped"]). For d >= 16, r = 0.5 as for the sphere.
        r = min(0.5, float(np.sqrt(d)) / 8.0)

    def draw(count: int, stream: int) -> np.ndarray:
        g = _rng(seed, stream).standard_normal((count, d))  # (N, d), float64
        if key == "sphere":
            return g / np.linalg.norm(g, axis=1, keepdims=True)
        return g / np.sqrt(d)

    z_train, z_test = draw(n, _STREAM_X_TRAIN), draw(n_test, _STREAM_X_TEST)
    flipped = [0, 0]
    if labels == "random":
        y_train = _rng(seed, _STREAM_Y_TRAIN).integers(0, k, size=n)
        y_test = _rng(seed, _STREAM_Y_TEST).integers(0, k, size=n_test)
    else:
        w = _rng(seed, _STREAM_TEACHER).standard_normal((k, d))  # (classes, d)
        y_train = np.argmax(z_train @ w.T, axis=1)
        y_test = np.argmax(z_test @ w.T, axis=1)
        flipped[0] = _flip_labels(y_train, flip, k, _rng(seed, _STREAM_FLIP_TRAIN))
        flipped[1] = _flip_labels(y_test, flip, k, _rng(seed, _STREAM_FLIP_TEST))

    raw_train, raw_test = 0.5 + r * z_train, 0.5 + r * z_test
    clipped = int(((raw_train < 0) | (raw_train > 1)).sum() + ((raw_test < 0) | (raw_test > 1)).sum())
    x_train = torch.from_numpy(np.clip(raw_train, 0.0, 1.0).astype(np.float32))
    x_test = torch.from_numpy(np.clip(raw_test, 0.0, 1.0).astype(np.float32))
    y_train_t = torch.from_numpy(y_train.astype(np.int64))
    meta = {
        "name": key, "n": n, "n_test": n_test, "d": d, "input_shape": [d], "classes": k,
        "labels": labels, "flip": flip, "flipped_train": flipped[0], "flipped_test": flipped[1],
        "scale": r, "scale_kind": "radius r of the embedding x = 0.5 + r z (theory unit length)",
        "mean_l2_centered": float((x_train.double() - 0.5).norm(dim=1).mean()),
        "clipped": clipped,
        "distribution": ("uniform on the unit sphere S^{d-1}" if key == "sphere" else "N(0, I/d)"),
        "source": f"synthetic:{key}",
    }
    return Dataset(x_train=x_train, y_train=y_train_t.clone(), y_train_clean=y_train_t,
                   noisy_mask=torch.zeros(n, dtype=torch.bool), x_test=x_test,
                   y_test=torch.from_numpy(y_test.astype(np.int64)), meta=meta)


# --------------------------------------------------------------------------- real data
def _real(key: str, *, n, n_test, resize, classes, seed, data_dir) -> Dataset:
    if key == "digits":
        pool = _digits_pool()
    elif key in ("mnist", "fashion-mnist"):
        if data_dir is None:
            if key == "mnist":
                raise UserError("mnist is read from local IDX files: pass data_dir=<folder holding "
                                f"{', '.join(IDX_FILES.values())} (each optionally .gz)>")
            data_dir = FASHION_MNIST_DIR
        pool = _idx_pool(str(Path(data_dir).expanduser()))
    else:
        if data_dir is None:
            raise UserError(f"cifar10 is read from the python pickle batches: pass data_dir=<folder holding "
                            f"{CIFAR_SUBDIR}/ or {', '.join(CIFAR_TRAIN)}, {CIFAR_TEST}>")
        pool = _cifar_pool(str(Path(data_dir).expanduser()))
    x_tr, y_tr, x_te, y_te, scale_div, source = pool

    n_classes_all = int(max(y_tr.max(), y_te.max())) + 1
    if classes is None:
        k = n_classes_all
    else:
        k = _check_int(classes, "classes", minimum=2, allow_none=False)
        if k > n_classes_all:
            raise UserError(f"classes={k} but {key} has only {n_classes_all} classes; use 2..{n_classes_all}")
    keep_tr = np.flatnonzero(y_tr < k) if k < n_classes_all else np.arange(len(y_tr))
    keep_te = np.flatnonzero(y_te < k) if k < n_classes_all else np.arange(len(y_te))

    def subset(keep: np.ndarray, y: np.ndarray, count: int | None, rng, what: str, pool: str) -> np.ndarray:
        if count is None:
            return keep
        if count > len(keep):
            where = "" if k == n_classes_all else f" in classes 0..{k - 1}"
            raise UserError(f"{what}={count} but {key} has only {len(keep)} {pool} points{where}; "
                            f"use {what} <= {len(keep)}")
        return keep[_stratified_indices(y[keep], count, rng)]

    idx_tr = subset(keep_tr, y_tr, n, _rng(seed, _STREAM_TRAIN_SUBSET), "n", "training")
    idx_te = subset(keep_te, y_te, n_test, _rng(_FIXED_SPLIT_SEED, _STREAM_TEST_SUBSET), "n_test", "test")

    x_train = torch.from_numpy(x_tr[idx_tr].astype(np.float32) / scale_div)  # (N, C, H, W)
    x_test = torch.from_numpy(x_te[idx_te].astype(np.float32) / scale_div)
    native = list(x_train.shape[1:])
    if resize is not None:
        side = _check_int(resize, "resize", minimum=1, allow_none=False)
        h, w = native[1], native[2]
        if side > min(h, w):
            raise UserError(f"resize={side} is larger than {key}'s {h}x{w} images; resize only downsamples "
                            f"(use 1..{min(h, w)})")
        x_train = _area_resize(x_train, side)
        x_test = _area_resize(x_test, side)
    y_train = torch.from_numpy(y_tr[idx_tr].astype(np.int64))
    shape = list(x_train.shape[1:])
    meta = {
        "name": key, "n": int(len(idx_tr)), "n_test": int(len(idx_te)), "d": int(np.prod(shape)),
        "input_shape": shape, "native_shape": native, "resize": resize, "classes": k,
        "class_counts": np.bincount(y_train.numpy(), minlength=k).tolist(),
        "pool_train": int(len(keep_tr)), "pool_test": int(len(keep_te)),
        "scale": float(x_train.double().flatten(1).norm(dim=1).mean()) if len(idx_tr) else 0.0,
        "scale_kind": "mean L2 norm of a training input",
        "mean_l2_centered": float((x_train.double() - 0.5).flatten(1).norm(dim=1).mean()),
        "source": source,
    }
    return Dataset(x_train=x_train, y_train=y_train.clone(), y_train_clean=y_train,
                   noisy_mask=torch.zeros(len(idx_tr), dtype=torch.bool), x_test=x_test,
                   y_test=torch.from_numpy(y_te[idx_te].astype(np.int64)), meta=meta)


def _area_resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """Area-average (N, C, H, W) images to (N, C, side, side); values stay in [0, 1]."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    out = torch.nn.functional.adaptive_avg_pool2d(x, (side, side))
    return out.clamp_(0.0, 1.0).contiguous()


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


@functools.lru_cache(maxsize=1)
def _digits_pool():
    """The fixed digits split: (x_train, y_train, x_test, y_test, divisor, source), x uint8-valued."""
    from sklearn.datasets import load_digits  # scikit-learn only for the digits (a second to import)

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None, :, :]  # (1797, 1, 8, 8), values 0..16
    y = bunch.target.astype(np.int64)
    k_test = int(round(_DIGITS_TEST_FRACTION * len(y)))
    test = _stratified_indices(y, k_test, _rng(_FIXED_SPLIT_SEED, 0))
    train = np.setdiff1d(np.arange(len(y)), test)
    out = (x[train], y[train], x[test], y[test])
    _readonly(*out)
    return (*out, 16.0, "sklearn.datasets.load_digits")


# --------------------------------------------------------------------------- IDX (MNIST format)
def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def _find_idx(folder: Path, base: str) -> Path | None:
    for cand in (base, base + ".gz", base.replace("-idx", ".idx"), base.replace("-idx", ".idx") + ".gz"):
        p = folder / cand
        if p.is_file():
            return p
    return None


def _idx_pool(folder: str):
    d = Path(folder)
    expected = ", ".join(IDX_FILES.values())
    if not d.is_dir():
        raise UserError(f"data directory not found: {d}; it should hold the IDX files {expected} "
                        "(each optionally .gz)")
    paths = {}
    missing = []
    for role, base in IDX_FILES.items():
        p = _find_idx(d, base)
        if p is None:
            missing.append(base)
        paths[role] = p
    if missing:
        raise UserError(f"missing IDX file(s) {', '.join(missing)} (or .gz) in {d}; expected {expected}")
    arrays = {role: _read_idx(*_file_key(p)) for role, p in paths.items()}
    for split_name in ("train", "test"):
        xi, yi = arrays[f"{split_name}_images"], arrays[f"{split_name}_labels"]
        if xi.ndim != 3 or yi.ndim != 1:
            raise UserError(f"{paths[split_name + '_images'].name} must hold 3-d images and "
                            f"{paths[split_name + '_labels'].name} 1-d labels (IDX idx3/idx1) in {d}")
        if len(xi) != len(yi):
            raise UserError(f"{paths[split_name + '_images'].name} has {len(xi)} images but "
                            f"{paths[split_name + '_labels'].name} has {len(yi)} labels in {d}; the files do not match")
        if len(yi) and int(yi.max()) > 9:
            raise UserError(f"{paths[split_name + '_labels'].name} in {d} has label {int(yi.max())}; "
                            "MNIST-format labels must be 0..9")
    x_tr = arrays["train_images"][:, None, :, :]
    x_te = arrays["test_images"][:, None, :, :]
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise UserError(f"train and test images in {d} have different sizes {x_tr.shape[2:]} vs {x_te.shape[2:]}")
    return (x_tr, arrays["train_labels"].astype(np.int64), x_te, arrays["test_labels"].astype(np.int64),
            255.0, str(d))


@functools.lru_cache(maxsize=16)
def _read_idx(path_str: str, size: int, mtime_ns: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (optionally gzipped); cached by path, size and mtime."""
    path = Path(path_str)
    bad = f"{path.name} in {path.parent} is not a valid IDX file"
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{bad} (cannot read or decompress: {exc}); replace it with the original file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{bad} (bad magic number); replace it with the original file")
    if raw[2] != 0x08:
        raise UserError(f"{bad} (data type code 0x{raw[2]:02x}, expected 0x08 unsigned bytes)")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise UserError(f"{bad} (truncated header); replace it with the original file")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise UserError(f"{bad} ({'truncated' if len(raw) < expected else 'trailing bytes'}: "
                        f"{len(raw)} bytes, header says {expected}); replace it with the original file")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    _readonly(arr)
    return arr


# --------------------------------------------------------------------------- CIFAR-10 pickles
def _latin1_encode(text, encoding="latin1"):
    """What Python 3 pickles of bytes (protocol <= 2) call; latin-1 only."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("only latin-1 byte strings are allowed")
    return text.encode("latin1")


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict:
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class _SafeUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return obj


@functools.lru_cache(maxsize=8)
def _read_cifar_batch(path_str: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path_str)
    bad = f"{path.name} in {path.parent} is not a CIFAR-10 python batch"
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OSError, MemoryError) as exc:
        raise UserError(f"{bad} ({type(exc).__name__}: {str(exc)[:120]}); replace it with the original file") from None
    if not isinstance(obj, dict):
        raise UserError(f"{bad} (expected a dict with keys data and labels, got {type(obj).__name__})")
    norm = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in norm or "labels" not in norm:
        raise UserError(f"{bad} (no 'data' and 'labels' entries); replace it with the original file")
    data, labels = norm["data"], norm["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{bad} (data is {desc}, expected uint8 of shape (N, 3072))")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"{bad} (labels are not integers)") from None
    if y.ndim != 1 or len(y) != len(data):
        raise UserError(f"{bad} ({len(data)} images but labels of shape {y.shape})")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise UserError(f"{bad} (labels outside 0..9)")
    x = np.ascontiguousarray(data).reshape(-1, 3, 32, 32)  # rows are 1024 R, 1024 G, 1024 B values
    _readonly(x, y)
    return x, y


@functools.lru_cache(maxsize=1)
def _cifar_arrays(keys: tuple) -> tuple:
    """All five training batches concatenated plus the test batch; cached by file identities."""
    train = [_read_cifar_batch(*key) for key in keys[:-1]]
    x_te, y_te = _read_cifar_batch(*keys[-1])
    x_tr = np.concatenate([b[0] for b in train])
    y_tr = np.concatenate([b[1] for b in train])
    _readonly(x_tr, y_tr)
    return x_tr, y_tr, x_te, y_te


def _cifar_pool(folder: str):
    d = Path(folder)
    names = ", ".join(CIFAR_TRAIN + (CIFAR_TEST,))
    if not d.is_dir():
        raise UserError(f"data directory not found: {d}; it should hold {CIFAR_SUBDIR}/ with {names}")
    base = d / CIFAR_SUBDIR if (d / CIFAR_SUBDIR).is_dir() else d
    missing = [f for f in CIFAR_TRAIN + (CIFAR_TEST,) if not (base / f).is_file()]
    if missing:
        raise UserError(f"missing CIFAR-10 batch file(s) {', '.join(missing)} in {base}; expected {names} "
                        f"(the python version, in {CIFAR_SUBDIR}/ or directly in data_dir)")
    keys = tuple(_file_key(base / f) for f in CIFAR_TRAIN + (CIFAR_TEST,))
    x_tr, y_tr, x_te, y_te = _cifar_arrays(keys)
    return x_tr, y_tr, x_te, y_te, 255.0, str(base)
