"""TFRecord files and `tf.train.Example` protos, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

and BAIR stores one `tf.train.Example` per record. An Example is a protobuf message
`Example{1: Features}`, `Features{1: repeated MapEntry{1: key string, 2: Feature}}`, and a `Feature` is a
oneof of `BytesList{1: repeated bytes}` (field 1), `FloatList{1: repeated float}` (field 2) or
`Int64List{1: repeated int64}` (field 3). The small protobuf wire-format reader below handles exactly
these messages, so that reading BAIR needs neither TensorFlow nor protobuf; it is checked against
independent implementations in tests/test_tfrecord.py (files written by tests/tfrecord_files.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from srvp.common.extras import require_extra

require_extra("video", "reading TFRecords (srvp.video_pred.data.tfrecord)", modules=("google_crc32c",))

import google_crc32c

FeatureValues = list[bytes] | list[float] | list[int]

_HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the data
_MASK_DELTA = 0xA282EAD8

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_BYTES_LIST, _FLOAT_LIST, _INT64_LIST = 1, 2, 3


class TFRecordError(ValueError):
    """A TFRecord file or an Example inside it is truncated or corrupt."""


def masked_crc32c(data: bytes) -> int:
    """CRC32C of `data`, rotated and offset as TFRecord framing stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def iter_record_spans(path: str | Path) -> Iterator[tuple[int, int]]:
    """Yield `(data_offset, data_length)` of every record of `path`, reading only the headers.

    The length header's CRC is checked; a truncated file raises TFRecordError after the complete
    records have been yielded, so a caller can keep those and report the rest.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as file:
        offset = 0
        while offset < size:
            header = file.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise TFRecordError(f"{path}: truncated record header at byte {offset}")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(f"{path}: corrupt record length at byte {offset} (CRC mismatch)")
            data_offset = offset + _HEADER.size
            offset = data_offset + length + _FOOTER.size
            if offset > size:
                raise TFRecordError(f"{path}: truncated record at byte {data_offset - _HEADER.size}")
            yield data_offset, length
            file.seek(offset)


def read_record(path: str | Path, data_offset: int, data_length: int) -> bytes:
    """Read one record's data located by `iter_record_spans` and check its CRC."""
    with Path(path).open("rb") as file:
        file.seek(data_offset)
        data = file.read(data_length)
        footer = file.read(_FOOTER.size)
    if len(data) < data_length or len(footer) < _FOOTER.size:
        raise TFRecordError(f"{path}: truncated record at byte {data_offset - _HEADER.size}")
    if masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
        raise TFRecordError(f"{path}: corrupt record at byte {data_offset - _HEADER.size} (CRC mismatch)")
    return data


def read_records(path: str | Path) -> Iterator[bytes]:
    """Yield the data of every record of `path`, all CRCs checked."""
    for data_offset, data_length in iter_record_spans(path):
        yield read_record(path, data_offset, data_length)


# ---- protobuf wire format -------------------------------------------------------------------------------


def _read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    """Decode the varint at `position`; return (value, position after it)."""
    value = shift = 0
    while True:
        if position >= len(buffer):
            raise TFRecordError("malformed protobuf: truncated varint")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise TFRecordError("malformed protobuf: varint longer than 10 bytes")


def _iter_fields(message: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield `(field_number, wire_type, value)` of a serialised message; value is an int or bytes."""
    position = 0
    while position < len(message):
        key, position = _read_varint(message, position)
        field_number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = _read_varint(message, position)
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _read_varint(message, position)
            if position + length > len(message):
                raise TFRecordError("malformed protobuf: field runs past the end of its message")
            value, position = message[position : position + length], position + length
        elif wire_type in (_FIXED32, _FIXED64):
            width = 4 if wire_type == _FIXED32 else 8
            if position + width > len(message):
                raise TFRecordError("malformed protobuf: truncated fixed-width field")
            value, position = message[position : position + width], position + width
        else:
            raise TFRecordError(f"malformed protobuf: unsupported wire type {wire_type}")
        yield field_number, wire_type, value


def _signed64(value: int) -> int:
    """Reinterpret a decoded varint as a two's-complement int64 (protobuf's int64 encoding)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_feature(feature: bytes) -> FeatureValues:
    """Decode one `Feature` message into the list of its values."""
    for kind, _, payload in _iter_fields(feature):
        if not isinstance(payload, bytes):
            raise TFRecordError("malformed Example: a Feature holds a non-message field")
        values: list = []
        for field_number, wire_type, value in _iter_fields(payload):
            if field_number != 1:
                continue
            if kind == _BYTES_LIST:
                values.append(value)
            elif kind == _FLOAT_LIST and wire_type == _LENGTH_DELIMITED:  # packed floats
                values.extend(v for (v,) in struct.iter_unpack("<f", value))
            elif kind == _FLOAT_LIST:
                values.append(struct.unpack("<f", value)[0])
            elif kind == _INT64_LIST and wire_type == _LENGTH_DELIMITED:  # packed varints
                position = 0
                while position < len(value):
                    number, position = _read_varint(value, position)
                    values.append(_signed64(number))
            elif kind == _INT64_LIST:
                values.append(_signed64(value))
        return values
    return []


def parse_example(example: bytes) -> dict[str, FeatureValues]:
    """Decode a serialised `tf.train.Example` into `{feature name: list of values}`."""
    features: dict[str, FeatureValues] = {}
    for field_number, _, features_message in _iter_fields(example):
        if field_number != 1 or not isinstance(features_message, bytes):
            continue
        for entry_number, _, entry in _iter_fields(features_message):
            if entry_number != 1 or not isinstance(entry, bytes):
                continue
            key, feature = b"", b""
            for part_number, _, part in _iter_fields(entry):
                if part_number == 1 and isinstance(part, bytes):
                    key = part
                elif part_number == 2 and isinstance(part, bytes):
                    feature = part
            features[key.decode("utf-8")] = _parse_feature(feature)
    return features
