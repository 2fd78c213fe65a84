"""The parser compiled with mypyc, and its Python sources as the fallback.

``pip install`` (editable or not) compiles ``storyreasoning.format``'s core modules
(``COMPILED_MODULES``); these tests check that the compiled modules are the ones imported,
that ``STORYREASONING_PURE_PYTHON=1`` and stale compiled modules in a checkout fall back to
the sources (all of them, with one line saying why), and that both give the same results.

Where the package is not compiled (installed with ``HATCH_BUILD_NO_HOOKS=true``, or run
from sources on ``PYTHONPATH``) the tests about compiled modules skip, except under
``CI=true``: CI installs from source with a compiler, and a silently pure build there would
hide the parser's speed work.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import storyreasoning
import storyreasoning.format as fmt
from storyreasoning.testing.hostile import HOSTILE

PACKAGE = Path(storyreasoning.__file__).parent  # src/storyreasoning (or site-packages/storyreasoning)
FORMAT = PACKAGE / "format"
REPO = Path(__file__).parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
STALE_LINE = "using the Python sources (slower)"


def compiled_files(directory: Path = FORMAT) -> dict[str, Path]:
    """The compiled module of each of COMPILED_MODULES found in ``directory``, by name."""
    found = {}
    for module in fmt.COMPILED_MODULES:
        for suffix in EXTENSION_SUFFIXES:
            if (directory / f"{module}{suffix}").exists():
                found[module] = directory / f"{module}{suffix}"
                break
    return found


def require_compiled() -> None:
    """Skip (fail under CI=true) unless every compiled module sits beside its source."""
    found = compiled_files()
    if len(found) == len(fmt.COMPILED_MODULES):
        return
    why = (
        f"the parser is not compiled ({len(found)} of {len(fmt.COMPILED_MODULES)} compiled modules in {FORMAT}); "
        "`pip install -e .` compiles it"
    )
    if IN_CI:
        pytest.fail(f"CI=true: {why}")
    pytest.skip(why)


def python(
    code: str, *, pure: bool = False, path: Path | str | None = None, isolated: bool = False
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter importing storyreasoning from ``path`` alone (default:
    where this process imports it from); ``isolated``: without site-packages (``-S``)."""
    env = {k: v for k, v in os.environ.items() if k != "STORYREASONING_PURE_PYTHON"}
    env["PYTHONPATH"] = (
        str(path) if path else os.pathsep.join([str(PACKAGE.parent), env.get("PYTHONPATH", "")])
    )
    if pure:
        env["STORYREASONING_PURE_PYTHON"] = "1"
    result = subprocess.run(
        [sys.executable, *(["-S"] if isolated else []), "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


PROBE = """
import json, sys
import storyreasoning.format as f
print(json.dumps({"compiled": f.COMPILED,
                  "files": {m: sys.modules["storyreasoning.format." + m].__file__ for m in f.COMPILED_MODULES}}))
"""


def test_the_compiled_modules_are_imported_unless_pure_python_is_asked_for():
    require_compiled()
    result = python(PROBE)
    if STALE_LINE in result.stderr:
        why = f"the compiled parser is older than its sources ({result.stderr.strip()})"
        if IN_CI:
            pytest.fail(f"CI=true: {why}")
        pytest.skip(why)
    seen = json.loads(result.stdout)
    assert seen["compiled"] is True
    assert {m: Path(p).suffix for m, p in seen["files"].items()} == dict.fromkeys(fmt.COMPILED_MODULES, ".so")
    assert result.stderr == ""

    pure = python(PROBE, pure=True)
    seen = json.loads(pure.stdout)
    assert seen["compiled"] is False
    assert {m: Path(p).name for m, p in seen["files"].items()} == {m: f"{m}.py" for m in fmt.COMPILED_MODULES}
    assert pure.stderr == ""  # asked for: nothing to say


def test_version_says_how_the_parser_runs():
    pure = python("from storyreasoning.cli import main; main(['--version'])", pure=True)
    assert pure.stdout == f"storyreasoning {storyreasoning.__version__} (parser: pure Python)\n"
    here = python("from storyreasoning.cli import main; main(['--version'], quick=False)")
    assert here.stdout.startswith(f"storyreasoning {storyreasoning.__version__} (parser: ")
    if fmt.COMPILED:
        assert here.stdout.endswith("(parser: compiled with mypyc)\n")


def test_compiled_flag_says_what_this_process_runs():
    files = [sys.modules[f"storyreasoning.format.{m}"].__file__ for m in fmt.COMPILED_MODULES]
    assert fmt.COMPILED is all(not f.endswith(".py") for f in files)
    assert fmt.COMPILED is not any(f.endswith(".py") for f in files)  # never a mix


def test_the_build_compiles_exactly_the_modules_the_fallback_covers():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    hook = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"]
    assert hook["include"] == [f"/src/storyreasoning/format/{m}.py" for m in fmt.COMPILED_MODULES]
    assert {"hatch-mypyc==0.16.0", "mypy==2.4.1"} <= set(config["build-system"]["requires"])


# ---------------------------------------------------------------------------------------
# pure and compiled give the same results


def texts() -> dict[str, str]:
    """Every shipped output and each hostile shape at a small size."""
    found = {}
    for folder in (REPO / "examples" / "outputs", REPO / "tests" / "format" / "data"):
        for path in sorted(folder.glob("*.txt")) if folder.is_dir() else ():
            found[str(path.relative_to(REPO))] = path.read_text(encoding="utf-8")
    for name, shape in HOSTILE.items():
        found[f"hostile: {name}"] = shape(3000)[0]
    return found


def outcomes() -> dict[str, dict]:
    """For each text: the parse as ``check --json`` shows it, batch and streamed in 4-character
    chunks (with the events), and whether a pickle round trip gives the same Telling."""
    from storyreasoning.format import StreamParser, parse_output

    results = {}
    for name, text in texts().items():
        telling = parse_output(text)
        parser = StreamParser()
        events = []
        for start in range(0, len(text), 4):
            events.extend(parser.feed(text[start : start + 4]))
        events.extend(parser.close())
        streamed = parser.result()
        copy = pickle.loads(pickle.dumps(telling))
        results[name] = {
            "batch": telling.to_dict(),
            "streamed": streamed.to_dict(),
            "events": [repr(e) for e in events],
            "pickled": copy == telling and copy.to_dict() == telling.to_dict(),
            "events pickled": pickle.loads(pickle.dumps(events)) == events,
        }
    return json.loads(json.dumps(results))  # the JSON shape, as it crosses the process boundary


def test_pure_and_compiled_parse_alike():
    here = outcomes()  # compiled where it is built
    code = (
        "import json, runpy\n"
        f"print(json.dumps(runpy.run_path({str(Path(__file__))!r}, run_name='probe')['outcomes']()))"
    )
    pure = json.loads(python(code, pure=True).stdout)
    assert len(here) >= 14 and list(pure) == list(here)
    for name in here:
        assert here[name]["pickled"] and here[name]["events pickled"], name
        assert pure[name]["pickled"] and pure[name]["events pickled"], name
        assert here[name]["streamed"] == here[name]["batch"], name
        assert pure[name] == here[name], name
    # the inputs exercise the diagnostics, not only clean parses
    codes = {d["code"] for r in here.values() for d in r["batch"]["diagnostics"]}
    assert {"mismatched-closer", "nested-tag", "malformed-tag", "extra-think"} <= codes


# ---------------------------------------------------------------------------------------
# stale compiled modules in a checkout


def checkout_copy(root: Path) -> Path:
    """A copy of this checkout's package (with its compiled modules) laid out as a checkout."""
    shutil.copytree(PACKAGE, root / "src" / "storyreasoning", ignore=shutil.ignore_patterns("__pycache__"))
    for library in PACKAGE.parent.glob("*__mypyc*"):  # the compiled modules' shared library
        shutil.copy2(library, root / "src" / library.name)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    return root / "src"


COMPILED_CODE = "import storyreasoning.format as f; print(f.COMPILED)"


def test_stale_compiled_modules_fall_back_to_the_sources_all_together(tmp_path):
    require_compiled()
    if not (PACKAGE.parents[1] / "pyproject.toml").exists():
        pytest.skip("an installed package, not a checkout: its compiled modules cannot be stale")
    src = checkout_copy(tmp_path)
    fresh = python(COMPILED_CODE, path=src)
    assert (fresh.stdout.strip(), fresh.stderr) == ("True", "")

    source = src / "storyreasoning" / "format" / "events.py"
    built = compiled_files(source.parent)["events"].stat().st_mtime
    os.utime(source, (built + 10, built + 10))  # edited after the build
    stale = python(COMPILED_CODE + "; import storyreasoning.format.box as b; print(b.__file__)", path=src)
    assert stale.stdout.split()[0] == "False"
    assert stale.stdout.split()[1].endswith("box.py")  # all of them, not only the stale one
    lines = stale.stderr.splitlines()
    assert len(lines) == 1 and STALE_LINE in lines[0] and "pip install -e ." in lines[0], stale.stderr
    assert "older than its sources" in lines[0]

    silenced = python(COMPILED_CODE, path=src, pure=True)
    assert (silenced.stdout.strip(), silenced.stderr) == ("False", "")


def test_an_older_shared_library_earlier_on_the_path_is_stale_too(tmp_path):
    # An editable install copies the library into site-packages, imported before src/'s copy;
    # a later `pip wheel .` rebuilds src/ alone: the modules there look fresh, the code is old.
    require_compiled()
    src = checkout_copy(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    libraries = list(src.glob("*__mypyc*"))
    assert libraries, "no shared library beside the package"
    package = src / "storyreasoning" / "format"
    # the newest parser source: in a working tree one may be edited after the others
    edited = max((package / f"{m}.py").stat().st_mtime for m in fmt.COMPILED_MODULES)
    for library in libraries:
        shutil.copy2(library, site / library.name)
        os.utime(site / library.name, (edited - 10, edited - 10))  # installed before the edit
    for module in compiled_files(package).values():
        os.utime(module, (edited + 10, edited + 10))  # rebuilt after it
    for library in libraries:
        os.utime(library, (edited + 10, edited + 10))
    shadowed = python(COMPILED_CODE, path=f"{site}{os.pathsep}{src}", isolated=True)
    assert shadowed.stdout.strip() == "False"
    assert "older than its sources" in shadowed.stderr and len(shadowed.stderr.splitlines()) == 1
    alone = python(COMPILED_CODE, path=src, isolated=True)
    assert (alone.stdout.strip(), alone.stderr) == ("True", "")


def test_compiled_modules_without_their_shared_library_fall_back(tmp_path):
    require_compiled()
    src = checkout_copy(tmp_path)
    for library in src.glob("*__mypyc*"):
        library.unlink()
    result = python(COMPILED_CODE, path=src, isolated=True)  # no installed copy of the library
    assert result.stdout.strip() == "False"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "cannot load" in lines[0] and STALE_LINE in lines[0], result.stderr


# ---------------------------------------------------------------------------------------
# the whole format suite on the sources


@pytest.mark.slow
def test_the_format_suite_passes_on_the_python_sources():
    env = {**os.environ, "STORYREASONING_PURE_PYTHON": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE.parent), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/format", "-q", "-p", "no:xdist", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-4000:]


# ---------------------------------------------------------------------------------------
# a machine without a C compiler still installs (hatch_build.py)


def _wheel(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Build a wheel of this checkout (a copy of its tracked files) with ``env`` set."""
    source = tmp_path / "source"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in files.stdout.splitlines():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_without_a_c_compiler_the_parser_is_built_as_python_unless_compilation_is_required(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("needs the git checkout to copy")
    built = _wheel(tmp_path, CC="/bin/false")  # every compiler call fails, as on a machine without one
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("storyreasoning-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")  # pure: no platform tag, no extension module
    from zipfile import ZipFile

    names = ZipFile(wheel).namelist()
    assert "storyreasoning/format/cot_parser.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]

    shutil.rmtree(tmp_path / "dist")
    refused = _wheel(tmp_path, CC="/bin/false", STORYREASONING_REQUIRE_COMPILED="1")
    assert refused.returncode != 0
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").glob("*.whl"))


def test_a_dataclass_with_its_own_init_does_not_have_one_generated():
    """``@dataclass`` still writes and compiles an ``__init__`` at import when the class defines its
    own (then throws it away): 13 M instructions of the compiled parser's import for the 19 such
    classes. They are declared ``init=False``."""
    import ast

    generated = []
    for module in fmt.COMPILED_MODULES:
        tree = ast.parse((FORMAT / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            own_init = any(
                isinstance(item, ast.FunctionDef) and item.name == "__init__" for item in node.body
            )
            for decorator in node.decorator_list:
                name = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(name, ast.Name) and name.id == "dataclass" and own_init:
                    keywords = {k.arg: k.value for k in getattr(decorator, "keywords", [])}
                    init = keywords.get("init")
                    if not (isinstance(init, ast.Constant) and init.value is False):
                        generated.append(f"{module}.{node.name}")
    assert generated == []
