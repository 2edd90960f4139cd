"""Regenerate the Python code in ``pilotfish/api`` from the ``.proto`` files in ``protos/``.

Run ``python -m pilotfish.api.generate`` (``make protos``) after editing a ``.proto``;
``--check`` only reports whether the committed code is stale, and ``tests/test_protos.py``
does the same through :func:`stale_files`.

Every ``*.proto`` under ``protos/`` is compiled in one ``grpc_tools.protoc`` run with
``-I protos`` plus grpcio-tools' bundled include directory (the google.protobuf
well-known types), emitting ``*_pb2.py`` and ``*_pb2.pyi`` next to each other under the
repository root, so ``protos/pilotfish/api/x/y.proto`` becomes the module
``pilotfish.api.x.y_pb2``. protoc's output depends only on the ``.proto`` files and the
protoc version, so the result is byte-for-byte reproducible.

About protoc and runtime versions: the protoc inside grpcio-tools 1.85 is libprotoc 35.x,
which stamps each ``*_pb2.py`` with "Protobuf Python Version: 7.35.x" and a call to
``runtime_version.ValidateProtobufRuntimeVersion(PUBLIC, 7, 35, x, ...)``. That check
fails only when the installed protobuf runtime is *older* than the gencode (or of
another domain); newer runtimes of the same or a later major (7.36 here) pass. Since
grpcio-tools 1.85 itself requires ``protobuf>=7.35.1,<8``, any environment that has our
dependencies can import the generated code, so we keep protoc's output untouched rather
than patching the check out. The flip side: a different grpcio-tools version emits a
different version stamp, so the staleness check names the two protoc versions when they
differ, instead of only listing every file as changed.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
# Generated modules live under this package (relative to the output root).
GENERATED_PACKAGE = Path("pilotfish") / "api"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")

_VERSION_STAMP = re.compile(rb"^# Protobuf Python Version: (\S+)$", re.MULTILINE)


class GenerateError(RuntimeError):
    """protoc failed (a syntax error in a .proto, a missing import, ...)."""


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """The ``.proto`` files to compile, as paths relative to ``proto_root``, sorted."""
    return sorted(p.relative_to(proto_root).as_posix() for p in proto_root.rglob("*.proto"))


def _well_known_include() -> str:
    """grpcio-tools' bundled include directory (google/protobuf/*.proto)."""
    return str(resources.files("grpc_tools") / "_proto")


def generate_into(out_root: Path, proto_root: Path = PROTO_ROOT) -> dict[str, bytes]:
    """Compile every ``.proto`` under ``proto_root`` into ``out_root``.

    Returns the generated files as ``{path relative to out_root: content}``.
    """
    protos = proto_files(proto_root)
    if not protos:
        raise GenerateError(f"no .proto files under {proto_root}")
    out_root.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{_well_known_include()}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        *protos,
    ]
    result = subprocess.run(cmd, cwd=proto_root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerateError(f"protoc failed ({result.returncode}):\n{result.stderr.strip()}")
    return read_generated(out_root)


def read_generated(root: Path) -> dict[str, bytes]:
    """The generated files present under ``root``: ``{relative path: content}``."""
    package = root / GENERATED_PACKAGE
    if not package.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(package.rglob("*"))
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def _version_stamps(contents: Iterable[bytes]) -> set[str]:
    """The protobuf versions that protoc stamped into these generated files."""
    return {m.group(1).decode() for c in contents if (m := _VERSION_STAMP.search(c))}


def compare(committed: Mapping[str, bytes], fresh: Mapping[str, bytes]) -> list[str]:
    """Human-readable differences between committed and freshly generated files."""
    problems: list[str] = []
    committed_versions = _version_stamps(committed.values())
    fresh_versions = _version_stamps(fresh.values())
    if committed_versions and fresh_versions and committed_versions != fresh_versions:
        problems.append(
            f"committed code was generated for protobuf {sorted(committed_versions)}, "
            f"this protoc generates {sorted(fresh_versions)} (a different grpcio-tools)"
        )
    for path in sorted(committed.keys() - fresh.keys()):
        problems.append(f"{path}: in the repository but no longer generated (delete it)")
    for path in sorted(fresh.keys() - committed.keys()):
        problems.append(f"{path}: generated but missing from the repository")
    for path in sorted(committed.keys() & fresh.keys()):
        if committed[path] != fresh[path]:
            diff = difflib.unified_diff(
                committed[path].decode(errors="replace").splitlines(),
                fresh[path].decode(errors="replace").splitlines(),
                fromfile=f"committed/{path}",
                tofile=f"generated/{path}",
                lineterm="",
                n=1,
            )
            excerpt = "\n".join(list(diff)[:20])
            problems.append(f"{path}: differs from the generated code\n{excerpt}")
    return problems


def stale_files(repo_root: Path = REPO_ROOT) -> list[str]:
    """Generate into a temporary directory and compare with the committed code.

    Returns an empty list when the committed code is up to date.
    """
    with tempfile.TemporaryDirectory(prefix="pilotfish-protos-") as tmp:
        fresh = generate_into(Path(tmp), repo_root / "protos")
    return compare(read_generated(repo_root), fresh)


def write(repo_root: Path = REPO_ROOT) -> list[str]:
    """Regenerate the committed code in place; return the paths that changed."""
    with tempfile.TemporaryDirectory(prefix="pilotfish-protos-") as tmp:
        fresh = generate_into(Path(tmp), repo_root / "protos")
    committed = read_generated(repo_root)
    changed: list[str] = []
    for path in sorted(committed.keys() - fresh.keys()):
        (repo_root / path).unlink()
        changed.append(path)
    for path, content in sorted(fresh.items()):
        if committed.get(path) == content:
            continue
        target = repo_root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        changed.append(path)
    for path in fresh:
        _ensure_packages(repo_root, (repo_root / path).parent)
    return changed


def _ensure_packages(repo_root: Path, directory: Path) -> None:
    """Make ``directory`` and its parents up to ``pilotfish/`` importable packages."""
    top = repo_root / GENERATED_PACKAGE
    while directory != top.parent and directory.is_relative_to(top):
        init = directory / "__init__.py"
        if not init.exists():
            init.write_bytes(b"")
        directory = directory.parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pilotfish.api.generate",
        description=(
            "Compile protos/**/*.proto with grpcio-tools into *_pb2.py and *_pb2.pyi "
            "under pilotfish/api (the generated code is committed)."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="do not write anything; exit 1 if the committed code is stale",
    )
    mode.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="generate into DIR instead of the repository (e.g. to inspect the output)",
    )
    args = parser.parse_args(argv)

    try:
        if args.check:
            problems = stale_files()
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print("generated code is stale: run `make protos`", file=sys.stderr)
                return 1
            print("generated code is up to date")
            return 0
        if args.out is not None:
            files = generate_into(args.out)
            print(f"generated {len(files)} files into {args.out}")
            return 0
        changed = write()
    except GenerateError as err:
        print(err, file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path}")
    print(f"{len(changed)} generated files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
