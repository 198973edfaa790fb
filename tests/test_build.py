"""`make build`: what the built artifact holds, and that its handlers import as Lambda would load them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.build import FUNCTIONS, REPO
from xata2convex_local.runtime import runtime_python


def test_the_built_layer_holds_the_package_and_its_dependencies_and_nothing_for_development(
    sam_build: Path,
) -> None:
    layer = sam_build / "XataToConvexLayer" / "python"
    package = layer / "xata2convex"
    assert (package / "trigger.py").is_file() and (package / "pg_source.py").is_file()
    assert (layer / "aws_lambda_powertools").is_dir() and (layer / "xata").is_dir()
    assert (layer / "psycopg").is_dir()
    everything = [p.relative_to(layer).as_posix() for p in layer.rglob("*")]
    for unwanted in ("local", "demo.py", "seedgen.py", "xata_server.py", "convex_server.py"):
        assert not [p for p in everything if Path(p).name == unwanted], unwanted
    assert not [p for p in everything if p.startswith(("xata2convex_local", "click", "moto"))]
    for function in FUNCTIONS:
        assert (sam_build / function / "app.py").is_file(), function


def test_each_built_handler_imports_with_the_runtime_python_and_only_its_layer(sam_build: Path) -> None:
    """Nothing from the development install: `-I -S` leaves out site-packages, the path is Lambda's."""
    layer = sam_build / "XataToConvexLayer" / "python"
    for function in FUNCTIONS:
        check = subprocess.run(
            [str(runtime_python()), "-I", "-S", "-c",
             "import sys; sys.path[:0] = sys.argv[1:]; import app; import xata2convex.jobs",
             str(sam_build / function), str(layer)],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert check.returncode == 0, f"{function}: {check.stderr[-2000:]}"


def test_local_commands_name_the_development_package_when_it_is_missing() -> None:
    """As in an install of xata2convex alone: `xata2convex local …` says what to install, in one line."""
    blocked = (
        "import sys\n"
        "class Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'xata2convex_local':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from xata2convex.cli import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked, "local", "xata", "--seed", "seeds/sample"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e ./dev" in lines[0] and "make setup" in lines[0], lines
