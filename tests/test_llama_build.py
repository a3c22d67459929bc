"""The llama.cpp build: portable flags unless asked otherwise, and no AMX or AVX-512 code."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from distillpipe import llama_build

ROOT = Path(__file__).resolve().parents[1]


def test_x86_64_builds_for_avx2_without_native_flags_avx512_or_amx():
    flags = llama_build.cmake_args({}, machine="x86_64").split()
    assert "-DGGML_NATIVE=OFF" in flags
    assert "-DGGML_AVX2=ON" in flags
    assert {"-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF"} <= set(flags)


def test_arm_builds_without_native_flags():
    assert llama_build.cmake_args({}, machine="aarch64") == "-DGGML_NATIVE=OFF"


def test_a_native_build_is_opt_in_and_any_flags_can_replace_the_set():
    assert llama_build.cmake_args({"DISTILLPIPE_LLAMA_NATIVE": "1"}) == "-DGGML_NATIVE=ON"
    assert llama_build.cmake_args({"LLAMA_CPP_CMAKE_ARGS": "-DGGML_CUDA=ON"}) == "-DGGML_CUDA=ON"


def test_each_set_of_flags_gets_its_own_wheel_folder():
    portable = llama_build.wheel_dir(llama_build.cmake_args({}))
    native = llama_build.wheel_dir("-DGGML_NATIVE=ON")
    assert portable != native
    assert llama_build.VERSION in portable.name


def test_the_package_pins_the_version_the_build_script_builds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [dep for dep in project["dependencies"] if dep.startswith("llama-cpp-python")]
    assert pins == [f"llama-cpp-python=={llama_build.VERSION}"]


def _cpu_libraries() -> list[Path]:
    import llama_cpp

    package = Path(llama_cpp.__file__).parent
    return sorted(p for p in package.rglob("libggml*.so*") if p.is_file())


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_the_installed_library_holds_no_amx_or_avx512_instructions():
    """A native build on a CPU that advertises AMX or AVX-512 would carry them."""
    libraries = _cpu_libraries()
    assert libraries, "llama_cpp ships no libggml libraries"
    forbidden = re.compile(r"\b(tilezero|tileloadd|tdpbssd|tdpbf16ps|ldtilecfg)\b|%zmm\d")
    for library in libraries:
        listing = subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", str(library)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found = forbidden.search(listing)
        assert found is None, f"{library.name} holds {found.group(0)}"
