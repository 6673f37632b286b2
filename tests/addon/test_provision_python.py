"""scripts/provision-python: the interpreter it provides can build C extensions."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "provision-python"
EXTENSION = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {
    {"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tiny", NULL, -1, methods};
PyMODINIT_FUNC PyInit_tiny(void) { return PyModule_Create(&module); }
"""
DISPATCH = re.compile(r"^#\s*include <([^>]+/pyconfig\.h)>", re.MULTILINE)


def test_include_dir_is_self_contained() -> None:
    """Python.h and a pyconfig.h that needs no other include directory."""
    include = Path(sysconfig.get_paths()["include"])
    assert (include / "Python.h").is_file()
    pyconfig = (include / "pyconfig.h").read_text()
    # A Debian multiarch dispatcher would need /usr/include on the search path.
    assert not DISPATCH.search(pyconfig), "pyconfig.h only dispatches elsewhere"
    assert "SIZEOF_VOID_P" in pyconfig


def test_c_extension_compiles_and_imports(tmp_path: Path) -> None:
    """Compile and import a tiny extension against this interpreter's headers."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None, "a C compiler (cc) is needed to build extensions"
    source = tmp_path / "tiny.c"
    source.write_text(EXTENSION)
    target = tmp_path / f"tiny{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [sys.executable, "-c", "import tiny; print(tiny.answer())"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "42"


def _tool_dir(tmp_path: Path) -> Path:
    """Return a PATH folder with only the tools the script's reuse path needs."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("grep", "cp", "env", "bash"):
        found = shutil.which(name)
        assert found is not None
        (tools / name).symlink_to(found)
    return tools


def test_an_existing_copy_gets_its_headers_shipped(tmp_path: Path) -> None:
    """A copy unpacked earlier, with Debian's dispatching pyconfig.h, is repaired."""
    prefix = tmp_path / "cache" / "python3.14"
    (prefix / "usr" / "bin").mkdir(parents=True)
    interpreter = prefix / "usr" / "bin" / "python3.14"
    interpreter.symlink_to(os.path.realpath(sys.executable))
    include = prefix / "usr" / "include"
    (include / "python3.14").mkdir(parents=True)
    (include / "python3.14" / "Python.h").write_text("/* headers */\n")
    (include / "python3.14" / "pyconfig.h").write_text(
        "#if defined(__linux__)\n"
        "#  include <x86_64-linux-gnu/python3.14/pyconfig.h>\n"
        "#endif\n"
    )
    real = include / "x86_64-linux-gnu" / "python3.14" / "pyconfig.h"
    real.parent.mkdir(parents=True)
    real.write_text("#define SIZEOF_VOID_P 8\n")

    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={
            "PATH": str(_tool_dir(tmp_path)),
            "HOME": str(tmp_path),
            "ECU_PROXY_CACHE": str(tmp_path / "cache"),
        },
        check=True,
        capture_output=True,
        text=True,
        executable=shutil.which("bash"),
    )
    assert result.stdout.strip() == str(interpreter)
    assert (include / "python3.14" / "pyconfig.h").read_text() == real.read_text()


def test_an_interpreter_of_the_series_is_taken_as_it_is(tmp_path: Path) -> None:
    """ECU_PROXY_PYTHON of the asked series is printed; nothing is unpacked."""
    series = f"{sys.version_info[0]}.{sys.version_info[1]}"
    result = subprocess.run(
        ["bash", str(SCRIPT), series],
        env={
            "PATH": str(_tool_dir(tmp_path)),
            "HOME": str(tmp_path),
            "ECU_PROXY_CACHE": str(tmp_path / "cache"),
            "ECU_PROXY_PYTHON": sys.executable,
        },
        check=True,
        capture_output=True,
        text=True,
        executable=shutil.which("bash"),
    )
    assert result.stdout.strip() == sys.executable
    assert not (tmp_path / "cache").exists()


def test_an_unknown_series_is_refused(tmp_path: Path) -> None:
    """Only the series the project tests on can be asked for."""
    result = subprocess.run(
        ["bash", str(SCRIPT), "3.12"],
        env={"PATH": str(_tool_dir(tmp_path)), "HOME": str(tmp_path)},
        check=False,
        capture_output=True,
        text=True,
        executable=shutil.which("bash"),
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unsupported series 3.12" in result.stderr
