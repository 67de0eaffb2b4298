"""TFRecord files and tf.train.Example protos written by hand for tests: small files in the real format that
the reader in video_pred/data/tfrecord.py (and, in tests, TensorFlow's own protobuf classes) must read."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from srvp.video_pred.data.tfrecord import FeatureValues, masked_crc32c

_LENGTH_DELIMITED = 2
_BYTES_LIST, _FLOAT_LIST, _INT64_LIST = 1, 2, 3


def frame_record(data: bytes) -> bytes:
    """Frame `data` as one TFRecord record (header, data, footer)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def write_records(file: BinaryIO, records: Sequence[bytes]) -> None:
    """Write `records` framed as a TFRecord file into the binary `file`."""
    for data in records:
        file.write(frame_record(data))


def _varint(value: int) -> bytes:
    """Encode a non-negative int (or an int64 as two's complement) as a varint."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def encode_example(features: Mapping[str, FeatureValues]) -> bytes:
    """Serialise `{name: values}` as a `tf.train.Example`.

    The value type picks the list kind: bytes -> BytesList, float -> FloatList (packed), int -> Int64List
    (packed), as TensorFlow itself writes them.
    """
    entries = []
    for name, values in features.items():
        if all(isinstance(v, bytes) for v in values):
            kind, payload = _BYTES_LIST, b"".join(_length_delimited(1, v) for v in values)
        elif all(isinstance(v, float) for v in values):
            kind, payload = _FLOAT_LIST, _length_delimited(1, struct.pack(f"<{len(values)}f", *values))
        elif all(isinstance(v, int) for v in values):
            kind, payload = _INT64_LIST, _length_delimited(1, b"".join(_varint(v) for v in values))
        else:
            raise ValueError(f"feature {name!r}: values must all be bytes, all float or all int")
        feature = _length_delimited(kind, payload)
        entry = _length_delimited(1, name.encode("utf-8")) + _length_delimited(2, feature)
        entries.append(_length_delimited(1, entry))
    return _length_delimited(1, b"".join(entries))
