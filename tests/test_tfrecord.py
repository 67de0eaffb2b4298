"""TFRecord framing and tf.train.Example parsing, checked against independent implementations:
tensorboard's TFRecord writer and google.protobuf messages built from the real Example schema."""

from __future__ import annotations

import io

import pytest

from srvp.video_pred.data.tfrecord import TFRecordError, iter_record_spans, masked_crc32c, parse_example, read_records
from tests.tfrecord_files import encode_example, write_records

FEATURES = {
    "0/image_aux1/encoded": [bytes(range(256)) * 3],
    "0/action": [0.5, -1.25, 3.0],
    "0/endeffector_pos": [1.0, 2.0, 3.0],
    "counts": [0, 1, 300, -7, 2**40],
    "names": [b"a", b"", b"ccc"],
}


def _example_message_class():
    """tf.train.Example (example.proto + feature.proto) compiled at run time by google.protobuf."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="srvp_test_example.proto", package="srvptest", syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    for name, kind, packed in (
        ("BytesList", field.TYPE_BYTES, False),
        ("FloatList", field.TYPE_FLOAT, True),
        ("Int64List", field.TYPE_INT64, True),
    ):
        message = file.message_type.add(name=name)
        value = message.field.add(name="value", number=1, type=kind, label=field.LABEL_REPEATED)
        value.options.packed = packed
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in ((1, "bytes_list"), (2, "float_list"), (3, "int64_list")):
        type_name = ".srvptest." + {"bytes_list": "BytesList", "float_list": "FloatList"}.get(name, "Int64List")
        feature.field.add(
            name=name,
            number=number,
            type=field.TYPE_MESSAGE,
            type_name=type_name,
            label=field.LABEL_OPTIONAL,
            oneof_index=0,
        )
    features = file.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(
        name="value", number=2, type=field.TYPE_MESSAGE, type_name=".srvptest.Feature", label=field.LABEL_OPTIONAL
    )
    features.field.add(
        name="feature",
        number=1,
        type=field.TYPE_MESSAGE,
        type_name=".srvptest.Features.FeatureEntry",
        label=field.LABEL_REPEATED,
    )
    example = file.message_type.add(name="Example")
    example.field.add(
        name="features", number=1, type=field.TYPE_MESSAGE, type_name=".srvptest.Features", label=field.LABEL_OPTIONAL
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("srvptest.Example"))


def _as_dict(example) -> dict:
    out = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[key] = list(getattr(feature, kind).value)
    return out


def _assert_same_features(parsed: dict, expected: dict) -> None:
    assert parsed.keys() == expected.keys()
    for key, values in expected.items():
        assert parsed[key] == pytest.approx(values) if isinstance(values[0], float) else parsed[key] == values


def test_example_round_trip() -> None:
    _assert_same_features(parse_example(encode_example(FEATURES)), FEATURES)


def test_example_matches_protobuf() -> None:
    example_class = _example_message_class()
    # our encoding, parsed by protobuf
    _assert_same_features(_as_dict(example_class.FromString(encode_example(FEATURES))), FEATURES)
    # protobuf's encoding, parsed by us (protobuf may order map entries and pack lists its own way)
    message = example_class()
    for key, values in FEATURES.items():
        feature = message.features.feature[key]
        kind = {bytes: feature.bytes_list, float: feature.float_list, int: feature.int64_list}[type(values[0])]
        kind.value.extend(values)
    _assert_same_features(parse_example(message.SerializeToString()), FEATURES)


def test_framing_matches_tensorboard_writer() -> None:
    record_writer = pytest.importorskip("tensorboard.summary.writer.record_writer")
    records = [b"", b"x", encode_example(FEATURES), bytes(1000)]
    expected = io.BytesIO()
    writer = record_writer.RecordWriter(expected)
    for data in records:
        writer.write(data)
    ours = io.BytesIO()
    write_records(ours, records)
    assert ours.getvalue() == expected.getvalue()


def test_masked_crc_known_value() -> None:
    # CRC32C("123456789") = 0xE3069283 (the standard check value), then rotated right by 15 plus the mask delta
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_read_back_and_corruption(tmp_path) -> None:
    path = tmp_path / "a.tfrecords"
    records = [encode_example({"k": [bytes([i]) * 50]}) for i in range(3)]
    with path.open("wb") as file:
        write_records(file, records)
    assert list(read_records(path)) == records

    data = bytearray(path.read_bytes())
    corrupt = tmp_path / "corrupt.tfrecords"
    corrupt.write_bytes(bytes(data[:20]) + bytes([data[20] ^ 1]) + bytes(data[21:]))  # inside record 0's data
    with pytest.raises(TFRecordError, match="CRC mismatch"):
        list(read_records(corrupt))

    truncated = tmp_path / "truncated.tfrecords"
    truncated.write_bytes(bytes(data[:-10]))
    spans = []
    with pytest.raises(TFRecordError, match="truncated"):
        for span in iter_record_spans(truncated):
            spans.append(span)
    assert len(spans) == 2  # the complete records before the cut stay readable


def test_malformed_protobuf_is_an_error() -> None:
    with pytest.raises(TFRecordError, match="malformed"):
        parse_example(b"\x0a\xff\x01abc")  # features field claims 255 bytes, holds 3
