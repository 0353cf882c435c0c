"""Tar packing and safe unpacking for upload_dir and download_dir."""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
from typing import IO

# Archives up to this size stay in memory; bigger ones spill to a temp file.
_SPOOL_BYTES = 8 << 20


def pack_dir(local_dir: str) -> "tempfile.SpooledTemporaryFile[bytes]":
    """Packs the contents of ``local_dir`` (not the folder itself) into a tar file object."""
    if not os.path.isdir(local_dir):
        raise NotADirectoryError(f"upload_dir: {local_dir!r} is not a directory")
    spool: "tempfile.SpooledTemporaryFile[bytes]" = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(os.listdir(local_dir)):
            tf.add(os.path.join(local_dir, name), arcname=name, recursive=True, filter=_owner_free)
    spool.seek(0)
    return spool


def _owner_free(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Local uids mean nothing inside the sandbox; the agent writes as the sandbox user.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def unpack_stream(stream: IO[bytes], local_dir: str) -> int:
    """Extracts a tar stream into ``local_dir`` and returns the number of regular files.

    Refuses entries that would land outside ``local_dir`` (absolute names, ``..``,
    links pointing out) and skips devices and fifos.
    """
    os.makedirs(local_dir, exist_ok=True)
    root = os.path.realpath(local_dir)
    count = 0
    with tarfile.open(fileobj=stream, mode="r|*") as tf:
        for member in tf:
            name = posixpath.normpath(member.name.lstrip("/")) if member.name else "."
            if name in (".", "") and member.isdir():
                continue
            if name.startswith("../") or name == ".." or os.path.isabs(member.name):
                raise ValueError(f"download_dir: archive entry {member.name!r} escapes the target directory")
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                continue
            dest = os.path.realpath(os.path.join(root, name))
            if dest != root and not dest.startswith(root + os.sep):
                raise ValueError(f"download_dir: archive entry {member.name!r} escapes the target directory")
            if member.issym() or member.islnk():
                target = member.linkname
                base = os.path.dirname(dest) if member.issym() else root
                resolved = os.path.realpath(os.path.join(base, target))
                if os.path.isabs(target) or not (resolved == root or resolved.startswith(root + os.sep)):
                    raise ValueError(f"download_dir: link {member.name!r} -> {target!r} points outside the target")
            member.name = name
            member.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            if hasattr(tarfile, "data_filter"):
                # The "data" filter repeats the checks above on Pythons that have it.
                tf.extract(member, root, filter="data")
            else:
                tf.extract(member, root)
            if member.isfile():
                count += 1
    return count
