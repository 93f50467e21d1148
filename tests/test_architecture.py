"""The floors of the package (README, "Architecture") hold: imports only point down."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parents[1] / "scanlab"

#: Floor 1: numerics, validation, device choice and tunables shared by every backend.
GROUND = {
    "scanlab._angle_reduction",
    "scanlab._arrays",
    "scanlab._devices",
    "scanlab._float_bits",
    "scanlab._gates",
    "scanlab._iterates",
    "scanlab._kernel_cache",
    "scanlab._recurrence_numerics",
    "scanlab._row_summary",
    "scanlab._scaled_products",
    "scanlab._step_checks",
    "scanlab._step_routines",
    "scanlab.config",
    "scanlab.math",
    "scanlab.wisdom",
}
#: Floor 3: the device-agnostic driver.
DRIVERS = {"scanlab._newton"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def scanlab_imports(path: pathlib.Path) -> set:
    """The scanlab modules ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("scanlab")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scanlab"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                submodule = PACKAGE.parent / (candidate.replace(".", "/") + ".py")
                found.add(candidate if submodule.exists() else node.module)
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("backend", ["scanlab.cpu", "scanlab.cuda"])
def test_the_kernels_import_only_the_ground_floor_and_their_own_backend(backend):
    for name, path in MODULES.items():
        if name.startswith(backend + "."):
            for imported in scanlab_imports(path):
                allowed = imported in GROUND or imported.startswith(backend)
                assert allowed, f"{name} imports {imported}"


def test_the_ground_floor_and_the_driver_import_nothing_above_them():
    for name in GROUND | DRIVERS:
        for imported in scanlab_imports(MODULES[name]):
            assert imported in GROUND, f"{name} imports {imported}"


def test_no_module_holds_more_than_600_lines():
    for name, path in MODULES.items():
        lines = len(path.read_text().splitlines())
        assert lines <= 600, f"{name} has {lines} lines"
