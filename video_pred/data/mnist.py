"""MNIST digits from the four standard idx files: a strict idx parser, MD5 checks and mirror downloads.

Stochastic Moving MNIST is generated from these digits; the loader accepts a local folder (for machines
without internet) or downloads the files once into a cache folder.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from srvp.common.files import atomic_write

# Published MD5 checksums of the DECOMPRESSED idx files: gzip bytes differ between mirrors, content does not.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Tried in order; each serves "<name>.gz".
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT_S = 60.0

# idx type codes (third header byte) -> element type; the data is big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode the bytes of an (uncompressed) idx file; `name` only labels errors.

    Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
    dimension. The payload must hold exactly prod(dims) elements: a truncated or padded file is an error.
    """
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError(f"{name}: not an idx file (bad magic number {data[:4].hex() or 'empty'})")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{name}: unknown idx type code 0x{type_code:02x}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{name}: truncated idx header ({len(data)} bytes, {ndim} dimensions announced)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected_size = header_size + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected_size:
        kind = "truncated" if len(data) < expected_size else "has trailing bytes"
        raise ValueError(f"{name}: idx file {kind} ({len(data)} bytes, header {dims} needs {expected_size})")
    values = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return values.astype(dtype.newbyteorder("="))


def _decompressed_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic (whatever its suffix)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({error})") from error


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx1/idx3 (any idx) file, plain or gzipped, into a native-endian array."""
    path = Path(path)
    return parse_idx(_decompressed_bytes(path), str(path))


def _locate(folder: Path, name: str) -> Path | None:
    """The raw or gzipped copy of `name` in `folder`, the raw one first."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _md5_problem(content: bytes, name: str) -> str | None:
    """Why `content` is not the published file `name`, or None when its MD5 matches."""
    digest = hashlib.md5(content).hexdigest()
    if digest == MNIST_MD5[name]:
        return None
    return f"MD5 of the decompressed data is {digest}, {name} has {MNIST_MD5[name]}"


def _fetch(name: str, mirrors: tuple[str, ...]) -> bytes:
    """Download `<name>.gz` from the first mirror that serves it with the right content; gz bytes returned."""
    failures = []
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
            problem = _md5_problem(gzip.decompress(payload), name)
        except (OSError, EOFError, zlib.error) as error:
            problem = str(error)
        if problem is None:
            return payload
        failures.append(f"{url}: {problem}")
    raise RuntimeError(f"could not download {name}.gz from any MNIST mirror ({'; '.join(failures)})")


def download_mnist(split: str, cache_dir: str | Path, mirrors: tuple[str, ...] = MNIST_MIRRORS) -> Path:
    """Make sure `cache_dir` holds the two files of `split`, downloading the missing ones; returns the folder.

    Each file is verified before it is written atomically, so an interrupted download leaves nothing.
    """
    cache_dir = Path(cache_dir).expanduser()
    for name in _split_files(split):
        if _locate(cache_dir, name) is None:
            payload = _fetch(name, mirrors)
            atomic_write(cache_dir / f"{name}.gz", lambda file, payload=payload: file.write(payload))
    return cache_dir


def _split_files(split: str) -> tuple[str, str]:
    if split not in MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}: expected one of {sorted(MNIST_FILES)}")
    return MNIST_FILES[split]


def _read_verified(folder: Path, name: str, verify_md5: bool) -> tuple[np.ndarray, Path]:
    """The decoded file `name` of `folder` and the path it came from, after the MD5 check (when asked)."""
    path = _locate(folder, name)
    if path is None:
        raise FileNotFoundError(f"MNIST file missing in {folder}: expected {name} or {name}.gz")
    content = _decompressed_bytes(path)
    problem = _md5_problem(content, name) if verify_md5 else None
    if problem is not None:
        raise ValueError(f"{path}: {problem} (set dataset.verify_md5=false to use other digits in this format)")
    return parse_idx(content, str(path)), path


def load_mnist(
    split: str, source: str | Path | None, cache_dir: str | Path, verify_md5: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Digits and labels of an MNIST split: uint8 images (N, 28, 28) and uint8 labels (N,).

    `source` is a folder holding the idx files (raw or .gz); None downloads them into `cache_dir` first
    (`cache_dir` is unused otherwise). The decompressed content must match the published MD5 unless
    `verify_md5` is off (a local folder of other digits in the idx format, e.g. tests' tiny files).
    """
    images_name, labels_name = _split_files(split)
    folder = download_mnist(split, cache_dir) if source is None else Path(source).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST source folder {folder} does not exist")
    images, images_path = _read_verified(folder, images_name, verify_md5)
    labels, labels_path = _read_verified(folder, labels_name, verify_md5)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: expected uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(f"{labels_path}: expected uint8 ({len(images)},), got {labels.dtype} {labels.shape}")
    return images, labels
