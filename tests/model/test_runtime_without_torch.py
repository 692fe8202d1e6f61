"""The runtime side of the model area (registry, card, signature, FLOPs) never imports torch."""

from __future__ import annotations

import subprocess
import sys


def test_registry_and_card_do_not_import_torch() -> None:
    code = (
        "import sys, v4runtime.model, v4runtime.model.registry, v4runtime.model.card, v4runtime.model.flops, "
        "v4runtime.model.data, v4runtime.model.commands\n"
        "from v4runtime.model import resolve_model\n"
        "resolve_model()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
