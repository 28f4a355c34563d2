"""Build of pywavernn's compiled extension (pywavernn._kernels).

What it does:
- compiles the plain-C sources in pywavernn/_kernels/c/ once with portable flags (the generic path, always built);
- compiles each ISA variant source (c/*_isa.c) once per instruction set with that set's own flags
  (e.g. -mavx2 -mfma -mf16c), with PWR_ISA set to the variant's name; the runtime dispatcher picks one by CPU
  feature detection. It never uses -march=native: the built wheel must run on any CPU of the architecture.
- detects OpenMP by compiling, linking and running a tiny program; if that fails it warns and builds without it
  (pywavernn.openmp_enabled() then says False).

Run: pip install -e .   (or: python setup.py build_ext --inplace)
Set PYWAVERNN_NO_OPENMP=1 to build without OpenMP on purpose.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
CDIR = Path("pywavernn") / "_kernels" / "c"

# One entry per ISA variant: the flags its copy of each *_isa.c file is compiled with.
MACHINE = platform.machine().lower()
if MACHINE in ("x86_64", "amd64"):
    ISA_FLAGS = {"avx2": ["-mavx2", "-mfma", "-mf16c"],
                 # the AVX2 copy built with AVX-512F: its B-column 16x1 products run 16 rows per register
                 # (pwr_isa.h); no 512-bit auto-vectorisation elsewhere (some CPUs clock down for it)
                 "avx512": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mprefer-vector-width=256"]}
elif MACHINE in ("aarch64", "arm64"):
    ISA_FLAGS = {"neon": []}  # NEON and FP16 conversions are baseline on AArch64
else:
    ISA_FLAGS = {}
# Further PWR_ISA_<NAME> macros a variant's copy is compiled with (the AVX512 copy reuses the AVX2 code paths).
ISA_ALSO = {"avx512": ["AVX2"]}

BASE_CFLAGS = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unused-function"]


def _try_openmp(compiler_cmd: str) -> list[str] | None:
    """Compile, link and run a tiny OpenMP program; return the flag list if it all works."""
    src = (
        "#include <omp.h>\n#include <stdio.h>\n"
        "int main(void){int n=0;\n#pragma omp parallel reduction(+:n)\n n+=1;\n"
        "printf(\"%d\\n\", n>0); return n>0?0:1;}\n"
    )
    flags = ["-fopenmp"]
    with tempfile.TemporaryDirectory() as tmp:
        c_file = os.path.join(tmp, "omp_probe.c")
        exe = os.path.join(tmp, "omp_probe")
        with open(c_file, "w") as fh:
            fh.write(src)
        try:
            subprocess.run([compiler_cmd, *flags, c_file, "-o", exe], check=True, capture_output=True, timeout=120)
            out = subprocess.run([exe], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return flags if out.stdout.strip() == b"1" else None


def openmp_flags() -> list[str] | None:
    if os.environ.get("PYWAVERNN_NO_OPENMP"):
        return None
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not shutil.which(cc):
        cc = "cc"
    flags = _try_openmp(cc)
    if flags is None:
        print("pywavernn setup: WARNING: OpenMP test program failed to compile/link/run; "
              "building without OpenMP (single-threaded kernels).", file=sys.stderr)
    return flags


class BuildExtWithISAVariants(build_ext):
    """Compiles every c/*_isa.c once per ISA with that ISA's flags and links the objects in."""

    def build_extension(self, ext):
        # cythonize() may hand back copies of the Extension without our extra attributes, so they are also
        # kept in _ISA_BUILD by extension name.
        variant_sources = getattr(ext, "isa_sources", None) or _ISA_BUILD.get(ext.name, {}).get("sources", [])
        openmp_cflags = getattr(ext, "openmp_cflags", None) or _ISA_BUILD.get(ext.name, {}).get("omp", [])
        extra_objects = []
        for isa, flags in ISA_FLAGS.items():
            for src in variant_sources:
                macros = [m for m in ext.define_macros if not m[0].startswith("PWR_ISA")]
                macros += [("PWR_ISA", isa), (f"PWR_ISA_{isa.upper()}", "1")]
                macros += [(f"PWR_ISA_{also}", "1") for also in ISA_ALSO.get(isa, [])]
                objs = self.compiler.compile(
                    [src],
                    output_dir=os.path.join(self.build_temp, isa),
                    macros=macros,
                    include_dirs=ext.include_dirs,
                    extra_postargs=BASE_CFLAGS + flags + openmp_cflags,
                    depends=ext.depends,
                )
                extra_objects.extend(objs)
        ext.extra_objects = list(ext.extra_objects or []) + extra_objects
        super().build_extension(ext)


_ISA_BUILD: dict[str, dict[str, list[str]]] = {}


def make_extension() -> Extension:
    omp = openmp_flags()
    omp_c = omp or []
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"), ("PWR_HAVE_OPENMP", "1" if omp else "0")]
    for isa in ISA_FLAGS:
        macros.append((f"PWR_BUILT_{isa.upper()}", "1"))
    all_c = sorted(str(p) for p in (HERE / CDIR).glob("*.c"))
    rel = lambda p: os.path.relpath(p, HERE)  # noqa: E731
    generic_c = [rel(p) for p in all_c if not p.endswith("_isa.c")]
    isa_c = [rel(p) for p in all_c if p.endswith("_isa.c")]
    # The generic copy of each *_isa.c is compiled like any other source (PWR_ISA=generic).
    ext = Extension(
        "pywavernn._kernels._engine",
        sources=["pywavernn/_kernels/_engine.pyx", *generic_c, *isa_c],
        include_dirs=[str(CDIR), numpy.get_include()],
        define_macros=macros + [("PWR_ISA", "generic"), ("PWR_ISA_GENERIC", "1")],
        extra_compile_args=BASE_CFLAGS + omp_c,
        extra_link_args=omp_c,
        depends=[rel(p) for p in (HERE / CDIR).glob("*.h")],
    )
    ext.isa_sources = isa_c
    ext.openmp_cflags = omp_c
    _ISA_BUILD[ext.name] = {"sources": isa_c, "omp": omp_c}
    return ext


if __name__ == "__main__":
    setup(
        ext_modules=cythonize([make_extension()], language_level=3, compiler_directives={"boundscheck": False,
                              "wraparound": False, "cdivision": True, "initializedcheck": False}),
        cmdclass={"build_ext": BuildExtWithISAVariants},
    )
