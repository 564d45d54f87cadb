"""Build hook of `pip install .` (metadata: pyproject.toml).

The package is a ctypes binding: no extension is compiled for Python, but
libscfetch.so is, by the project's own CMake build, and copied into the
package beside __init__.py, where scfetch._capi looks first.  The wheel is
therefore platform-specific.  CMake options can be passed through
SCFETCH_CMAKE_ARGS (e.g. "-DSCF_ASAN=ON")."""
import os
import shlex
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = os.path.dirname(os.path.abspath(__file__))


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        tmp = os.path.join(os.path.abspath(self.get_finalized_command("build").build_temp),
                           "cmake")
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("scfetch: cmake is needed to build libscfetch "
                               "(apt-get install cmake, see README.md)")
        args = shlex.split(os.environ.get("SCFETCH_CMAKE_ARGS", ""))
        subprocess.check_call([cmake, "-S", ROOT, "-B", tmp, "-DCMAKE_BUILD_TYPE=Release",
                               "-DBUILD_TESTING=OFF", *args])
        subprocess.check_call([cmake, "--build", tmp, "--target", "scfetch",
                               "-j", str(os.cpu_count() or 1)])
        lib = os.path.realpath(os.path.join(tmp, "libscfetch.so"))
        dest = os.path.join(self.build_lib, "scfetch", "libscfetch.so")
        self.copy_file(lib, dest)


class BinaryDistribution(Distribution):
    """A wheel that holds a shared library is not pure Python."""

    def has_ext_modules(self):
        return True


# Build outputs under build-pip/ (ignored by git), not in the sources.
os.makedirs(os.path.join(ROOT, "build-pip"), exist_ok=True)
setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution,
      options={"build": {"build_base": os.path.join(ROOT, "build-pip")},
               "egg_info": {"egg_base": os.path.join(ROOT, "build-pip")}})
