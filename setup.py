"""Setuptools hook: build libjanus (C11, libjanus/) into the package on every install.

Metadata lives in pyproject.toml. The ``build_libjanus`` step compiles the library, the embedded
runtime and ``janus-decide`` into ``janus_deploy/_libjanus/`` (see janus_deploy/schedule/native.py):
in the build folder for wheels, in the source tree for editable installs. Set JANUS_SKIP_LIBJANUS=1
to install without it (no C compiler).
"""

import importlib.util
import os
from pathlib import Path

from setuptools import Command, Distribution, setup
from setuptools.command.build import build

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_janus_native", ROOT / "janus_deploy" / "schedule" / "native.py")
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)


class build_libjanus(Command):
    description = "compile libjanus and janus-decide into janus_deploy/_libjanus"
    user_options = []

    def initialize_options(self):
        self.build_lib = None
        self.editable_mode = False

    def finalize_options(self):
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def _dest(self):
        base = ROOT if self.editable_mode else Path(self.build_lib)
        return base / "janus_deploy" / native.OUT_NAME

    def run(self):
        if os.environ.get("JANUS_SKIP_LIBJANUS"):
            self.announce("JANUS_SKIP_LIBJANUS is set: libjanus is not built", level=3)
            return
        native.build(ROOT / "libjanus", self._dest(), log=lambda m: self.announce(m, level=3))

    def get_outputs(self):
        dest = self._dest()
        return [str(p) for p in dest.rglob("*") if p.is_file()] if not self.editable_mode and dest.is_dir() else []

    def get_output_mapping(self):
        return {}

    def get_source_files(self):
        return [str(p.relative_to(ROOT)) for p in (ROOT / "libjanus").rglob("*") if p.is_file()]


class build_with_libjanus(build):
    sub_commands = build.sub_commands + [("build_libjanus", None)]


class BinaryDistribution(Distribution):
    """The wheel holds native code: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build": build_with_libjanus, "build_libjanus": build_libjanus}, distclass=BinaryDistribution)
