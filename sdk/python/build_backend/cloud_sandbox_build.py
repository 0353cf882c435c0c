"""In-tree PEP 517 / PEP 660 build backend for the cloud-sandbox SDK.

It uses the standard library only, so pip can build the package in an empty,
isolated build environment with no access to PyPI. It builds a pure-Python
wheel of ``cloud_sandbox/``, an editable wheel (a ``.pth`` file that puts the
source directory on ``sys.path``) and an sdist.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "cloud_sandbox"
# Files and folders an sdist carries besides the package itself.
SDIST_EXTRA = ["pyproject.toml", "README.md", "build_backend", "tests"]


def _project() -> Dict[str, str]:
    """Reads name, version, summary and requires-python from pyproject.toml."""
    path = os.path.join(ROOT, "pyproject.toml")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        return _project_fallback(raw.decode("utf-8"))
    project = tomllib.loads(raw.decode("utf-8"))["project"]
    license_ = project.get("license", {})
    return {
        "name": project["name"],
        "version": project["version"],
        "description": project.get("description", ""),
        "requires-python": project.get("requires-python", ""),
        "license": license_.get("text", "") if isinstance(license_, dict) else "",
    }


def _project_fallback(text: str) -> Dict[str, str]:
    """Reads the simple `key = "value"` lines of [project] on Pythons without tomllib."""
    out: Dict[str, str] = {"license": ""}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
            continue
        if section != "project":
            continue
        m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"\s*$', line)
        if m:
            out[m.group(1)] = m.group(2)
        m = re.match(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]*)"\s*\}\s*$', line)
        if m:
            out["license"] = m.group(1)
    for key in ("name", "version"):
        if key not in out:
            raise RuntimeError(f"pyproject.toml: [project] {key} is missing")
    return out


def _dist_name(p: Dict[str, str]) -> str:
    return re.sub(r"[-_.]+", "_", p["name"]).lower()


def _dist_info(p: Dict[str, str]) -> str:
    return f"{_dist_name(p)}-{p['version']}.dist-info"


def _metadata(p: Dict[str, str]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p.get('description', '')}",
    ]
    if p.get("requires-python"):
        lines.append(f"Requires-Python: {p['requires-python']}")
    if p.get("license"):
        lines.append(f"License: {p['license']}")
    readme = os.path.join(ROOT, "README.md")
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _wheel_file() -> str:
    return (
        "Wheel-Version: 1.0\n"
        "Generator: cloud_sandbox_build\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )


def _package_files() -> List[Tuple[str, str]]:
    """Returns (absolute path, archive name) for every file of the package."""
    out = []
    base = os.path.join(ROOT, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            out.append((full, os.path.relpath(full, ROOT).replace(os.sep, "/")))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"{name},sha256={digest.decode('ascii')},{len(data)}"


def _write_wheel(directory: str, entries: List[Tuple[str, bytes]]) -> str:
    """Writes a wheel with the given (name, data) entries plus dist-info files."""
    p = _project()
    dist_info = _dist_info(p)
    entries = list(entries) + [
        (f"{dist_info}/METADATA", _metadata(p).encode("utf-8")),
        (f"{dist_info}/WHEEL", _wheel_file().encode("utf-8")),
        (f"{dist_info}/top_level.txt", (PACKAGE + "\n").encode("utf-8")),
    ]
    record = [_record_line(name, data) for name, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode("utf-8")))
    filename = f"{_dist_name(p)}-{p['version']}-py3-none-any.whl"
    os.makedirs(directory, exist_ok=True)
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return filename


def _write_metadata_dir(metadata_directory: str) -> str:
    p = _project()
    dist_info = _dist_info(p)
    target = os.path.join(metadata_directory, dist_info)
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata(p))
    with open(os.path.join(target, "WHEEL"), "w", encoding="utf-8") as f:
        f.write(_wheel_file())
    return dist_info


# --- PEP 517 hooks -----------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    """Nothing beyond the standard library is needed."""
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    """Nothing beyond the standard library is needed."""
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    """Nothing beyond the standard library is needed."""
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Optional[dict] = None
) -> str:
    """Writes the .dist-info directory and returns its name."""
    return _write_metadata_dir(metadata_directory)


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: Optional[dict] = None
) -> str:
    """Writes the .dist-info directory and returns its name."""
    return _write_metadata_dir(metadata_directory)


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[dict] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Builds a pure-Python wheel of the package and returns its file name."""
    entries = []
    for full, name in _package_files():
        with open(full, "rb") as f:
            entries.append((name, f.read()))
    return _write_wheel(wheel_directory, entries)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[dict] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Builds an editable wheel: a .pth file pointing at this source tree."""
    pth = (ROOT + "\n").encode("utf-8")
    return _write_wheel(wheel_directory, [(f"__editable__.{PACKAGE}.pth", pth)])


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    """Builds a .tar.gz source distribution and returns its file name."""
    p = _project()
    base = f"{_dist_name(p)}-{p['version']}"
    filename = base + ".tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    now = int(time.time())

    def clean(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
        if "__pycache__" in info.name or info.name.endswith(".pyc"):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for item in [PACKAGE] + SDIST_EXTRA:
            full = os.path.join(ROOT, item)
            if os.path.exists(full):
                tf.add(full, arcname=f"{base}/{item}", filter=clean)
        pkg_info = _metadata(p).encode("utf-8")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        info.mtime = now
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(pkg_info))
    return filename
