"""The core library stands alone: importing any `maskforge` module loads no workflow or stage code."""

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import maskforge
for module in pkgutil.walk_packages(maskforge.__path__, "maskforge."):
    importlib.import_module(module.name)
print(sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("workflow", "stages", "maskforge_workflow")}))
"""


def test_importing_every_core_module_loads_no_workflow_code():
    loaded = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_the_params_schema_ships_inside_the_package():
    from maskforge.config import SCHEMA_PATH
    import maskforge
    assert SCHEMA_PATH.is_file() and SCHEMA_PATH.parent.parent.samefile(maskforge.__path__[0])


def test_the_workflow_commands_reach_the_console_script_through_its_entry_point():
    from maskforge.cli import build_parser
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"store", "sweep", "report", "dvc-yaml", "grid", "handover"} <= set(commands)
