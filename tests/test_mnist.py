"""MNIST idx reading, checksum verification, mirror download and the real files (when present)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from srvp.video_pred.data.mnist import MNIST_FILES, download_mnist, load_mnist, read_idx
from tests.mnist_files import write_fake_split, write_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_real_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="real MNIST files not available"
)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(7, dtype=np.uint8),  # idx1, like labels
        np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8),  # idx3, like images
        np.array([[1, -2, 70000]], dtype=np.int32),  # multi-byte type: checks the byte order
    ],
)
def test_read_idx_round_trip(tmp_path, array, compress):
    path = write_idx(tmp_path / ("data.gz" if compress else "data"), array, compress)
    read_back = read_idx(path)
    assert read_back.shape == array.shape
    np.testing.assert_array_equal(read_back, array)


def test_truncated_idx_names_the_file(tmp_path):
    path = write_idx(tmp_path / "images-idx3", np.zeros((2, 28, 28), np.uint8), False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"images-idx3.*truncated"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(100, np.uint8), True)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match=r"labels\.gz"):
        read_idx(path)


def test_trailing_bytes_and_bad_magic_are_rejected(tmp_path):
    path = write_idx(tmp_path / "padded", np.zeros(4, np.uint8), False)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="padded.*trailing"):
        read_idx(path)
    not_idx = tmp_path / "notidx"
    not_idx.write_bytes(b"\x01\x02\x08\x01hello")
    with pytest.raises(ValueError, match="notidx.*magic"):
        read_idx(not_idx)


def test_md5_mismatch_names_the_file(tmp_path):
    write_fake_split(tmp_path, "test")
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*MD5"):
        load_mnist("test", tmp_path, tmp_path / "cache")


def test_missing_files_name_folder_and_expected_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*train-images-idx3-ubyte"):
        load_mnist("train", tmp_path, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist("train", tmp_path / "nowhere", tmp_path / "cache")
    with pytest.raises(ValueError, match="valid"):
        load_mnist("valid", tmp_path, tmp_path / "cache")


def test_download_fails_clearly_when_no_mirror_serves_the_right_bytes(tmp_path):
    wrong_mirror = tmp_path / "mirror"
    wrong_mirror.mkdir()
    write_fake_split(wrong_mirror, "test")
    mirrors = ((tmp_path / "absent").as_uri() + "/", wrong_mirror.as_uri() + "/")
    with pytest.raises(RuntimeError, match=r"t10k-images-idx3-ubyte\.gz: MD5"):
        download_mnist("test", tmp_path / "cache", mirrors)
    assert not list((tmp_path / "cache").glob("*"))


@needs_real_mnist
def test_download_falls_back_to_the_next_mirror(tmp_path):
    mirrors = ((tmp_path / "absent").as_uri() + "/", SHARED_MNIST.as_uri() + "/")
    cache = download_mnist("test", tmp_path / "cache", mirrors)
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    images, labels = load_mnist("test", cache, tmp_path / "unused")
    assert images.shape == (10_000, 28, 28)


@needs_real_mnist
def test_real_mnist_files(tmp_path):
    images, labels = load_mnist("test", SHARED_MNIST, tmp_path)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and set(np.unique(labels)) == set(range(10))
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    # source=None reads an already populated cache without touching the network.
    for name in MNIST_FILES["train"]:
        shutil.copy(SHARED_MNIST / f"{name}.gz", tmp_path)
    train_images, train_labels = load_mnist("train", None, tmp_path)
    assert train_images.shape == (60_000, 28, 28) and train_labels.shape == (60_000,)
    assert 0 < train_images.mean() < 255


def test_other_digits_in_the_idx_format_load_without_the_checksum(tmp_path):
    write_fake_split(tmp_path, "test", count=3)
    with pytest.raises(ValueError, match="verify_md5=false"):
        load_mnist("test", tmp_path, tmp_path)
    images, labels = load_mnist("test", tmp_path, tmp_path, verify_md5=False)
    assert images.shape == (3, 28, 28) and labels.shape == (3,)
