"""Atomic writes fail with one line naming the file and the reason, and leave nothing half-written."""

import errno

import pytest

from srvp.common import files
from srvp.common.files import atomic_write


def test_a_file_where_a_folder_should_be_is_named(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(OSError, match=f"cannot write {blocker}/run/config.yaml: a folder on its path is a file"):
        atomic_write(blocker / "run" / "config.yaml", lambda file: file.write(b"x"))


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (errno.ENOSPC, "no space left on the device holding"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_file_system_failures_while_writing_keep_the_old_file(tmp_path, number, reason):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old checkpoint")

    def failing(file):
        file.write(b"partial")
        raise OSError(number, "low-level message")

    with pytest.raises(OSError, match=f"cannot write {target}: {reason}") as caught:
        atomic_write(target, failing)
    assert "\n" not in str(caught.value)
    assert target.read_bytes() == b"old checkpoint"
    assert [path.name for path in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_torch_reporting_a_full_disk_is_named_as_one(tmp_path, monkeypatch):
    # torch.save turns ENOSPC into its own RuntimeError; the free space left identifies the cause.
    monkeypatch.setattr(files, "LOW_SPACE_BYTES", 2**62)

    def failing(file):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    with pytest.raises(OSError, match="no space left on the device holding"):
        atomic_write(tmp_path / "ckpt.pt", failing)
    monkeypatch.setattr(files, "LOW_SPACE_BYTES", 0)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # plenty of space: torch's own error stands
        atomic_write(tmp_path / "ckpt.pt", failing)


def test_results_of_an_earlier_run_are_never_replaced_silently(tmp_path):
    from srvp.common.files import check_no_earlier_results
    from srvp.video_pred.evaluate import RESULT_FILES

    check_no_earlier_results(tmp_path / "new", RESULT_FILES, "out_dir", overwrite=False)  # nothing there yet
    (tmp_path / "train.log").write_text("hydra's log is not a result")
    check_no_earlier_results(tmp_path, RESULT_FILES, "out_dir", overwrite=False)
    (tmp_path / "eval.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^out_dir=.* already holds results of an earlier run \(eval.json\)"):
        check_no_earlier_results(tmp_path, RESULT_FILES, "out_dir", overwrite=False)
    check_no_earlier_results(tmp_path, RESULT_FILES, "out_dir", overwrite=True)
