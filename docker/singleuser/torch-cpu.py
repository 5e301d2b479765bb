#!/usr/bin/env python3
"""PyPI's torch (the CUDA build) made into a CPU-only torch: no nvidia-* wheels, no triton.

Used by docker/singleuser/Dockerfile for TORCH_VARIANT=cpu, after ``pip install --no-deps torch==X``:

    torch-cpu.py requirements   print torch's own dependencies minus the CUDA ones (nvidia-*, cuda-*,
                                triton), for ``pip install -r``
    torch-cpu.py stubs          generate the stub CUDA libraries into torch/lib, drop the CUDA
                                dependencies from torch's installed metadata, write torch/lib/CPU-STUBS.txt
    torch-cpu.py slim           strip the static symbol tables (.symtab/.strtab, not the dynamic ones that
                                loading needs) of torch's libraries, as Debian strips its own, and drop
                                torch/include (C++ headers for building extensions: the image has no
                                compiler to build them with): about 0.21 GB less
    torch-cpu.py verify         import torch, check that CUDA is reported absent and that CPU tensors work

Why stubs: for Python 3.12 the only torch on PyPI is the CUDA build (PyTorch's CPU wheels live on its own
index, which this project may not reach). Its libraries list the CUDA libraries as DT_NEEDED
(libtorch_cpu.so needs libcudart.so.13 and libcupti.so.13, libtorch_cuda.so eleven more), so without the
2.7 GB of nvidia-* wheels ``import torch`` fails. This script reads, from the ELF files that
``import torch`` loads (the DT_NEEDED closure of torch/_C), every symbol they take from a library that is
not there (with its symbol version, e.g. ``cudaMalloc@libcudart.so.13``), and compiles one small stub per
missing SONAME that defines exactly those symbols under those versions. Every stub function returns an
error status (``cudaErrorNoDevice`` for the runtime, a non-zero status for the other libraries; the
``*GetErrorString``-style functions return a message), so torch behaves as on a machine without a GPU:
``torch.cuda.is_available()`` is False, ``torch.cuda.device_count()`` is 0, and CUDA calls raise. The
CUDA driver (libcuda.so.1) is never stubbed: torch loads it lazily, only after the runtime found a GPU.

Nothing is downloaded and nothing outside torch's own folder and dist-info is written. Needs gcc and
binutils' readelf while it runs.
"""

from __future__ import annotations

import email
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from base64 import urlsafe_b64encode
from pathlib import Path

#: projects torch requires that exist only to run on a GPU (PyPI names, normalised)
CUDA_PROJECT = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
#: a SONAME that may be stubbed: the CUDA runtime and its libraries (never the driver, libcuda.so.1)
STUBBABLE = re.compile(r"^lib(cudart|cupti|cublas|cublasLt|cudnn[A-Za-z_]*|cufft|cufile|curand|cusolver|"
                       r"cusparse|cusparseLt|nvrtc|nvrtc-builtins|nvJitLink|nvshmem_host|nccl|nvToolsExt)"
                       r"\.so(\.\d+)*$")
MESSAGE = "CUDA is not available: this is mlkkr's CPU-only torch (stub CUDA libraries, see torch/lib/CPU-STUBS.txt)"
#: status returned by the stub functions, per library: a non-zero "not initialised / no device" code
STATUS = {"cudart": 100, "cupti": 17, "cublas": 1, "cublasLt": 1, "cudnn": 1001, "nccl": 1, "nvrtc": 3,
          "cusparse": 1, "cusparseLt": 1, "cufft": 1, "curand": 201, "cusolver": 1, "cufile": 5001,
          "nvshmem_host": 1, "nvJitLink": 1}
STRING_FUNCTION = re.compile(r"(Get(Error|Status)(String|Name)|GetResultString|GetLastError$|ErrorString$)")


def torch_dir() -> Path:
    dist = importlib.metadata.distribution("torch")
    return Path(dist.locate_file("torch"))


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True).stdout


def needed(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", str(path)))


def system_libraries() -> dict[str, Path]:
    out = subprocess.run(["/sbin/ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    libs: dict[str, Path] = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if match and ("x86-64" in match.group(2) or "64bit" in match.group(2)):
            libs.setdefault(match.group(1), Path(match.group(3)))
    return libs


def closure(start: Path, libdir: Path) -> tuple[dict[str, Path], set[str], dict[Path, list[str]]]:
    """(SONAME -> file of what loads, SONAMEs that are missing, file -> its DT_NEEDED), from ``start``."""
    system = system_libraries()
    found: dict[str, Path] = {}
    missing: set[str] = set()
    deps: dict[Path, list[str]] = {}
    queue = [start]
    while queue:
        path = queue.pop()
        if path in deps:
            continue
        deps[path] = needed(path)
        for name in deps[path]:
            if name in found or name in missing:
                continue
            candidate = libdir / name
            if candidate.exists() and not is_stub(candidate):
                found[name] = candidate
                queue.append(candidate)
            elif STUBBABLE.match(name):  # never a CUDA found elsewhere on the system: stubbed, always
                missing.add(name)
            elif name in system:
                found[name] = system[name]
                queue.append(system[name])
            else:
                missing.add(name)
    return found, missing, deps


def is_stub(path: Path) -> bool:
    """Whether ``path`` is one of the stubs this script made (small, and carries MESSAGE)."""
    try:
        return path.stat().st_size < 1_000_000 and MESSAGE.encode() in path.read_bytes()
    except OSError:
        return False


def dynamic_symbols(path: Path) -> tuple[list[tuple[str, str | None, bool]], set[str]]:
    """(undefined symbols as (name, version or None, weak), names of the defined symbols) of ``path``."""
    undefined, defined = [], set()
    for line in readelf("--dyn-syms", str(path)).splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].endswith(":"):
            continue
        bind, ndx, name = parts[4], parts[6], parts[7]
        base, _, version = name.partition("@")
        version = version.lstrip("@") or None
        if ndx == "UND":
            if base:
                undefined.append((base, version, bind == "WEAK"))
        else:
            defined.add(base)
    return undefined, defined


def version_files(path: Path) -> dict[str, str]:
    """Version name -> the SONAME that must define it (the ELF's verneed section)."""
    out, current = {}, None
    for line in readelf("-V", str(path)).splitlines():
        file_match = re.search(r"File: (\S+)", line)
        if file_match:
            current = file_match.group(1)
            continue
        name_match = re.search(r"Name: (\S+)\s+Flags", line)
        if name_match and current:
            out[name_match.group(1)] = current
    return out


def stem(soname: str) -> str:
    return soname[3:].split(".so")[0]


def plan(tdir: Path) -> dict[str, dict[str | None, set[str]]]:
    """Missing SONAME -> {symbol version or None: symbol names} that the libraries of ``import torch`` need."""
    start = next(tdir.glob("_C.*.so"))
    found, missing, deps = closure(start, tdir / "lib")
    unknown = sorted(m for m in missing if not STUBBABLE.match(m))
    if unknown:
        sys.exit(f"torch-cpu: libraries missing that are not CUDA's, refusing to stub them: {unknown}")
    python = Path(sys.executable).resolve()
    python_libs = closure(python, python.parent.parent / "lib")[0]
    defined: set[str] = set()
    for path in [*found.values(), python, *python_libs.values()]:
        defined |= dynamic_symbols(path)[1]
    stubs: dict[str, dict[str | None, set[str]]] = {name: {} for name in missing}
    for path, names in deps.items():
        lacking = [n for n in names if n in missing]
        if not lacking:
            continue
        versions = version_files(path)
        undefined, _ = dynamic_symbols(path)
        unversioned_targets = [n for n in lacking if n not in versions.values()]
        for name, version, weak in undefined:
            if version and version in versions:
                if versions[version] in missing:
                    stubs[versions[version]].setdefault(version, set()).add(name)
                continue
            if weak or name in defined:
                continue
            # An unversioned symbol that nothing loaded defines: it comes from one of the missing
            # libraries without symbol versions; the one whose name starts the symbol's, else all of them.
            targets = sorted((t for t in unversioned_targets if name.lstrip("_").lower().startswith(stem(t).lower())),
                             key=lambda t: -len(stem(t)))[:1] or unversioned_targets
            if not targets:
                sys.exit(f"torch-cpu: {path.name} needs {name}, which nothing provides")
            for target in targets:
                stubs[target].setdefault(None, set()).add(name)
    return stubs


def c_source(soname: str, symbols: set[str]) -> str:
    status = STATUS.get(stem(soname), 1)
    lines = ["/* Generated by docker/singleuser/torch-cpu.py: a stub of " + soname + " (no CUDA here). */",
             f'const char mlkkr_cuda_stub_message[] = "{MESSAGE}";']
    for name in sorted(symbols):
        if name.startswith("__cuda"):  # fat-binary registration, run by static constructors: accept, do nothing
            lines.append(f"void *{name}(void) {{ return 0; }}")
        elif STRING_FUNCTION.search(name):
            lines.append(f"const char *{name}(void) {{ return mlkkr_cuda_stub_message; }}")
        else:
            lines.append(f"long {name}(void) {{ return {status}; }}")
    return "\n".join(lines) + "\n"


def version_script(by_version: dict[str | None, set[str]]) -> str:
    out = []
    unversioned = sorted(by_version.get(None, set()))
    for version, names in sorted((v, n) for v, n in by_version.items() if v):
        body = " ".join(f"{n};" for n in sorted(names | set(unversioned)))
        out.append(f"{version} {{ global: {body} }};")
        unversioned = []  # defined once, under the first version
    if unversioned or not out:
        names = " ".join(f"{n};" for n in [*unversioned, "mlkkr_cuda_stub_message"])
        out.append("{ global: " + names + " local: *; };")
    else:
        out[-1] = out[-1][:-2] + " mlkkr_cuda_stub_message; local: *; };"
    return "\n".join(out) + "\n"


def record_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + urlsafe_b64encode(digest).rstrip(b"=").decode()


def strip_cuda_requirements() -> list[str]:
    """Drop the CUDA projects from torch's installed Requires-Dist (and fix RECORD); return what was dropped."""
    dist = importlib.metadata.distribution("torch")
    meta = Path(dist.locate_file(next(f for f in dist.files or [] if f.name == "METADATA" and
                                      f.parent.name.endswith(".dist-info"))))
    lines, dropped = [], []
    for line in meta.read_text().splitlines(keepends=True):
        if line.startswith("Requires-Dist:"):
            name = re.match(r"Requires-Dist:\s*([A-Za-z0-9_.-]+)", line).group(1).lower().replace("_", "-")
            if CUDA_PROJECT.match(name):
                dropped.append(line.split(":", 1)[1].strip())
                continue
        lines.append(line)
    if dropped:
        meta.write_text("".join(lines))
        record = meta.with_name("RECORD")
        rows = record.read_text().splitlines()
        rel = f"{meta.parent.name}/METADATA"
        rows = [f"{rel},{record_hash(meta)},{meta.stat().st_size}" if r.startswith(rel + ",") else r for r in rows]
        record.write_text("\n".join(rows) + "\n")
    return dropped


def requirements() -> list[str]:
    meta = email.message_from_string(importlib.metadata.distribution("torch").read_text("METADATA") or "")
    out = []
    for req in meta.get_all("Requires-Dist") or []:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")
        if "extra ==" in req or CUDA_PROJECT.match(name):
            continue
        out.append(req.split(";")[0].strip())
    return out


def make_stubs() -> None:
    tdir = torch_dir()
    if (tdir.parent / "nvidia").is_dir():
        sys.exit(f"torch-cpu: {tdir.parent / 'nvidia'} exists: the CUDA libraries are installed, nothing to stub")
    stubs = plan(tdir)
    if not stubs:
        print("torch-cpu: nothing to stub (all libraries present)")
        return
    report = [MESSAGE, "",
              "torch behaves as on a machine without a GPU: torch.cuda.is_available() is False, device_count() 0,",
              "a CUDA tensor raises. Differences from PyPI's torch on such a machine: torch.backends.cudnn.version()",
              "raises (cuDNN is a stub; torch.backends.cudnn.is_available() still says True, a compile-time flag),",
              "the CPU profiler logs 'gpuGetDeviceCount failed with code 100' once, and the CUDA-only helpers",
              "(triton, cuda-bindings) are not installed.", "",
              "Stub libraries in this folder (SONAME: symbols defined; each returns an error status):"]
    with tempfile.TemporaryDirectory() as tmp:
        for soname, by_version in sorted(stubs.items()):
            symbols = set().union(*by_version.values()) if by_version else set()
            src, script = Path(tmp) / f"{soname}.c", Path(tmp) / f"{soname}.map"
            src.write_text(c_source(soname, symbols))
            script.write_text(version_script(by_version))
            out = tdir / "lib" / soname
            subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-s", f"-Wl,-soname,{soname}",
                            f"-Wl,--version-script={script}", "-o", str(out), str(src)], check=True)
            versions = ", ".join(sorted(v for v in by_version if v)) or "unversioned"
            report.append(f"  {soname}: {len(symbols)} symbols ({versions})")
            print(f"torch-cpu: stub {out.name}: {len(symbols)} symbols ({versions})")
    dropped = strip_cuda_requirements()
    report += ["", "Requires-Dist dropped from torch's metadata:", *(f"  {d}" for d in dropped or ["(none left)"])]
    (tdir / "lib" / "CPU-STUBS.txt").write_text("\n".join(report) + "\n")
    print(f"torch-cpu: dropped from torch's Requires-Dist: {', '.join(d.split(';')[0] for d in dropped) or '-'}")


def slim() -> None:
    libdir = torch_dir() / "lib"
    before = after = 0
    for lib in sorted(libdir.glob("*.so*")):
        size = lib.stat().st_size
        subprocess.run(["strip", "--strip-unneeded", str(lib)], check=True)
        before, after = before + size, after + lib.stat().st_size
    include = torch_dir() / "include"
    headers = sum(f.stat().st_size for f in include.rglob("*") if f.is_file()) if include.is_dir() else 0
    shutil.rmtree(include, ignore_errors=True)
    note = (f"The libraries here were stripped of their static symbol tables (strip --strip-unneeded): "
            f"{before / 1e6:.0f} MB -> {after / 1e6:.0f} MB; torch/include (C++ headers, {headers / 1e6:.0f} MB) "
            "was removed: there is no compiler in this image to build extensions with.")
    with open(libdir / "CPU-STUBS.txt", "a") as report:
        report.write("\n" + note + "\n")
    print(f"torch-cpu: {note}")


VERIFY = """
import torch
assert not torch.cuda.is_available(), "CUDA reported available"
assert torch.cuda.device_count() == 0
x = torch.randn(64, 64, dtype=torch.float64, requires_grad=True)
(x @ x.T).trace().backward()
assert torch.allclose(x.grad, 2 * x)
try:
    torch.zeros(1, device="cuda")
except (RuntimeError, AssertionError) as exc:
    cuda_error = str(exc).splitlines()[0]
else:
    raise SystemExit("a CUDA tensor was made")
print(f"torch {torch.__version__}: CPU ok, cuda.is_available() False; CUDA tensor -> {cuda_error}")
"""


def main(argv: list[str]) -> int:
    if argv == ["requirements"]:
        print("\n".join(requirements()))
    elif argv == ["stubs"]:
        make_stubs()
    elif argv == ["slim"]:
        slim()
    elif argv == ["verify"]:
        return subprocess.run([sys.executable, "-c", VERIFY], env={**os.environ, "PYTHONWARNINGS": "ignore"}).returncode
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
