"""`srvp-prepare kth|human36m|bair|folder --raw DIR --out DIR [--workers N] [--seed S]`: raw benchmark files,
or any folder of videos, to the prepared layout read by `srvp.video_pred.data.prepared.PreparedVideos`.

Rerunning resumes: videos already written are skipped. A user error (missing or wrong raw folder) ends
with a one-line message on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srvp.common.extras import require_extra

# Every preparer decodes videos (PyAV) or checks TFRecords (CRC32C): one line before any of them is imported.
require_extra("video", "srvp-prepare")

from srvp.video_pred.data.prepare_bair import prepare_bair
from srvp.video_pred.data.prepare_folder import FOLDER_ARGUMENTS, add_folder_arguments, folder_arguments, prepare_folder
from srvp.video_pred.data.prepare_human36m import prepare_human36m
from srvp.video_pred.data.prepare_kth import prepare_kth

PREPARERS: dict[str, Callable[..., dict[str, Any]]] = {
    "kth": prepare_kth,
    "human36m": prepare_human36m,
    "bair": prepare_bair,
    "folder": prepare_folder,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srvp-prepare",
        description="Convert a video benchmark from its public raw files, or any folder of videos, into uint8 .npy "
        "videos + meta.json.",
    )
    parser.add_argument("dataset", choices=sorted(PREPARERS), help="benchmark to prepare")
    parser.add_argument("--raw", required=True, help="folder holding the raw downloaded files")
    parser.add_argument("--out", required=True, help="folder to write the prepared dataset into")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--seed", type=int, default=42, help="seed of the validation split and test clips")
    add_folder_arguments(parser)
    return parser


def check_output_folder(out: Path) -> None:
    """Refuse an --out that is a file or lies under one, before any raw video is decoded."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--out {out}: {ancestor} is a file, not a folder")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point `srvp-prepare`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    options = folder_arguments(args)
    if options and args.dataset != "folder":
        flags = ", ".join(FOLDER_ARGUMENTS[name] for name in options)
        parser.error(f"{flags}: options of `srvp-prepare folder` only, not of {args.dataset}")
    try:
        check_output_folder(Path(args.out).expanduser())
        meta = PREPARERS[args.dataset](args.raw, args.out, workers=args.workers, seed=args.seed, **options)
    except (ValueError, RuntimeError, OSError) as error:
        sys.exit(f"srvp-prepare: error: {error}")
    counts = ", ".join(f"{split} {len(videos)}" for split, videos in meta["splits"].items())
    print(
        f"{args.dataset}: {counts} videos, {len(meta['test_clips']['clips'])} test clips, "
        f"{len(meta['skipped'])} skipped -> {args.out}"
    )


if __name__ == "__main__":
    main()
