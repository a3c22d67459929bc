"""Build llama-cpp-python from source for every CPU of this architecture, not just this one.

A default build compiles with the build host's own flags (``-march=native``,
AMX kernels where the CPU advertises AMX), and that library dies with SIGILL
on the next machine — or on this one, when AMX is advertised but faults, as
it does inside some VMs. pip's wheel cache ignores ``CMAKE_ARGS``, so a wheel
it cached from an earlier native build would come back whatever flags we ask
for: the wheel is built with ``--no-cache-dir`` into a folder of our own,
keyed by the version, the architecture and the flags, and installed from there.

    python3 distillpipe/llama_build.py      (before distillpipe is installed: stdlib only)
    python -m distillpipe.llama_build       (afterwards: the rebuild `distillpipe doctor` names)

``DISTILLPIPE_LLAMA_NATIVE=1`` opts in to a build tuned to this host (faster
here, not portable); ``LLAMA_CPP_CMAKE_ARGS`` replaces the flags altogether.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "0.3.36"
"""The llama-cpp-python release the project is tested with."""

# AVX2-class x86-64 (Haswell and later, every Zen): no AVX-512, no AMX.
_X86_64 = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    " -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
_GENERIC = "-DGGML_NATIVE=OFF"


def cmake_args(environ: dict[str, str] | None = None, machine: str | None = None) -> str:
    """The CMake flags for this build: portable unless the environment opts out."""
    environ = os.environ if environ is None else environ
    if environ.get("LLAMA_CPP_CMAKE_ARGS"):
        return environ["LLAMA_CPP_CMAKE_ARGS"]
    if environ.get("DISTILLPIPE_LLAMA_NATIVE") == "1":
        return "-DGGML_NATIVE=ON"
    machine = (machine or platform.machine()).lower()
    return _X86_64 if machine in ("x86_64", "amd64") else _GENERIC


def wheel_dir(flags: str, version: str = VERSION) -> Path:
    key = hashlib.sha256(f"{version} {platform.machine()} {flags}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "distillpipe" / "wheels" / f"llama-cpp-python-{version}-{key}"


def rebuild_command() -> str:
    """What to run when the installed llama.cpp does not run on this CPU."""
    return f"{Path(sys.executable).name} -m distillpipe.llama_build"


def build_wheel(flags: str, python: str = sys.executable, version: str = VERSION) -> Path:
    """The wheel for (version, architecture, flags): built once, then taken from its folder."""
    target = wheel_dir(flags, version)
    if not list(target.glob("llama_cpp_python-*.whl")):
        print(f"building llama-cpp-python {version} with {flags} (about 7 minutes on two cores)")
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            subprocess.run(
                [
                    python, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps",
                    "--no-binary", "llama-cpp-python", f"llama-cpp-python=={version}",
                    "-w", str(scratch),
                ],
                env={**os.environ, "CMAKE_ARGS": flags, "FORCE_CMAKE": "1"},
                check=True,
            )  # fmt: skip
            (scratch / "FLAGS").write_text(flags + "\n")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    (wheel,) = target.glob("llama_cpp_python-*.whl")
    return wheel


def build_and_install(python: str = sys.executable, version: str = VERSION) -> Path:
    wheel = build_wheel(cmake_args(), python, version)
    # --force-reinstall replaces a native build that an earlier install left behind
    pip = [python, "-m", "pip", "install"]
    subprocess.run([*pip, "--force-reinstall", "--no-deps", str(wheel)], check=True)
    subprocess.run([*pip, f"llama-cpp-python[server]=={version}"], check=True)
    return wheel


if __name__ == "__main__":
    build_and_install()
