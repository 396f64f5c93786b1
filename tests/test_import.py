"""The numerical core must not import the terminal UI (textual) — it is a library too."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", [
    "rnntui",
    "rnntui.trainer, rnntui.cli, rnntui.headless, rnntui.checkpoint, rnntui.gradcheck, rnntui.monitor, "
    "rnntui.process, rnntui.derivation, rnntui.parallel",
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
