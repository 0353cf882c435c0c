"""The in-tree build backend: offline pip installs (editable and not) and a complete sdist."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import unittest

import support  # noqa: F401 - puts the package on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "build_backend"))

import cloud_sandbox_build as backend  # noqa: E402


def _run(*argv: str) -> str:
    # Run outside the source tree so a bare `import cloud_sandbox` cannot find it by accident.
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                          cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}")
    return proc.stdout


class PipInstallTest(unittest.TestCase):
    def test_offline_installs_in_a_fresh_venv(self) -> None:
        cases = [
            ("editable", ["-e", ROOT], os.path.join(ROOT, "cloud_sandbox", "__init__.py")),
            ("regular", [ROOT], None),
        ]
        for name, args, want_file in cases:
            with self.subTest(name), tempfile.TemporaryDirectory() as d:
                venv = os.path.join(d, "venv")
                _run(sys.executable, "-m", "venv", venv)
                py = os.path.join(venv, "bin", "python")
                # --no-index: prove nothing is fetched from a package index.
                _run(py, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", *args)
                got = _run(py, "-c", "import cloud_sandbox, os; print(cloud_sandbox.__file__); "
                                     "print(cloud_sandbox.Sandbox.create.__name__)").split()
                if want_file:
                    self.assertEqual(os.path.realpath(got[0]), os.path.realpath(want_file))
                else:
                    self.assertIn("site-packages", got[0])
                    self.assertTrue(os.path.exists(os.path.join(os.path.dirname(got[0]), "py.typed")))
                self.assertEqual(got[1], "create")
                _run(py, "-m", "pip", "uninstall", "-y", "cloud-sandbox")


class SdistTest(unittest.TestCase):
    def test_sdist_contains_what_a_rebuild_needs(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            name = backend.build_sdist(d)
            self.assertEqual(name, "cloud_sandbox-0.1.0.tar.gz")
            with tarfile.open(os.path.join(d, name)) as tf:
                names = set(tf.getnames())
        base = "cloud_sandbox-0.1.0/"
        for want in ("PKG-INFO", "pyproject.toml", "README.md", "cloud_sandbox/__init__.py",
                     "build_backend/cloud_sandbox_build.py", "tests/test_integration.py"):
            self.assertIn(base + want, names)
        self.assertFalse([n for n in names if "__pycache__" in n])

    def test_metadata_without_tomllib(self) -> None:
        with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
            got = backend._project_fallback(f.read())
        self.assertEqual((got["name"], got["version"], got["requires-python"], got["license"]),
                         ("cloud-sandbox", "0.1.0", ">=3.9", "Apache-2.0"))


if __name__ == "__main__":
    unittest.main()
