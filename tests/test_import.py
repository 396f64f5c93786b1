"""The numerical core must not import the terminal UI (textual) — it is a library too — and no layer imports one
above it (DESIGN.md): at run time here, and statically, imports inside functions included, by import-linter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("modules", [
    "rnntui",
    "rnntui.trainer, rnntui.cli, rnntui.headless, rnntui.checkpoint, rnntui.gradcheck, rnntui.monitor, "
    "rnntui.derivation, rnntui.parallel, rnntui.state",
])
def test_core_does_not_import_textual(modules):
    code = (f"import sys\nimport {modules}\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext', 'plotext')"
            " or m.startswith('rnntui.tui'))\n"
            "print(','.join(bad))\n"
            "sys.exit(1 if bad else 0)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"imported UI modules: {p.stdout.strip()} {p.stderr}"


def test_public_names():
    import rnntui

    for name in rnntui.__all__:
        assert hasattr(rnntui, name), name
    assert rnntui.__version__.count(".") == 2


# -- the layers, as import-linter checks them (configured in pyproject.toml) ------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` (the test extras install it beside this Python) with the project's contracts."""
    script = Path(sys.executable).parent / "lint-imports"
    command = [str(script)] if script.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run([*command, "--no-cache", *args, str(ROOT / "pyproject.toml")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layers_contract_is_kept():
    """cli → tui | headless → runs → trainer → derivation → checkpoint | monitor | gradcheck | … → model → … →
    corpus | config: no module imports one above it, inside a function or not; the numerical core imports no UI nor
    sockets."""
    p = lint_imports()
    assert p.returncode == 0 and "0 broken" in p.stdout, p.stdout + p.stderr
    assert "layers: a lower layer never imports a higher one KEPT" in p.stdout


def test_an_import_inside_a_function_that_goes_up_a_layer_breaks_it(tmp_path):
    """The same check on a copy of the package whose checkpoint module imports the trainer inside a function
    (as it did before the trainer's state became one value): the contract is broken, and says where."""
    shutil.copytree(ROOT / "rnntui", tmp_path / "rnntui", ignore=shutil.ignore_patterns("__pycache__"))
    module = tmp_path / "rnntui" / "checkpoint.py"
    module.write_text(module.read_text() + "\n\ndef _up():\n    from .trainer import Trainer\n\n    return Trainer\n")
    p = lint_imports(cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "rnntui.checkpoint is not allowed to import rnntui.trainer" in p.stdout, p.stdout
