"""The layering of docs and DESIGN.md, checked on every import statement of the product.

Dependencies point one way: ``controller -> firmware, protocol``; ``hub -> protocol``;
``registry -> protocol``; ``provisioning -> protocol``. The shared ``runtime`` package may
be imported by every service and imports none of them (the contract in ``protocol`` it may
use); ``protocol`` imports nothing of ours. Nothing imports ``controller`` or ``hub`` but
their entry point (the ``pintu`` command) and tests, and no product package imports the
command's package ``pintu``.

Every ``import`` counts, at the top of a module or inside a function (a lazy import is
still a dependency), under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("protocol", "runtime", "firmware", "controller", "hub", "registry", "provisioning", "pintu")

# What each package may import of ours (itself included).
ALLOWED: dict[str, frozenset[str]] = {
    "protocol": frozenset({"protocol"}),
    "runtime": frozenset({"runtime", "protocol"}),  # none of the services
    "firmware": frozenset({"firmware", "protocol", "runtime"}),
    "controller": frozenset({"controller", "firmware", "protocol", "runtime"}),
    "hub": frozenset({"hub", "protocol", "runtime"}),
    "registry": frozenset({"registry", "protocol", "runtime"}),
    "provisioning": frozenset({"provisioning", "protocol", "runtime"}),
    "pintu": frozenset(OURS),  # the command: the one entry point of every part
}

# Known exceptions, each with the reason it stands. Keep this short.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # The door poster is drawn alike by the registry and the technician's tools, and every
    # word a person reads comes from the catalogs.
    ("protocol/poster.py", "runtime.i18n"): "the poster's words are translated",
}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: within its own package
                continue
            module = node.module or ""
            if module in OURS:  # "from protocol import passes" names a module too
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"
            else:
                yield node.lineno, module


def _violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top not in OURS or top in ALLOWED[package]:
                continue
            if any(rel == f and (name == m or name.startswith(m + ".")) for f, m in EXCEPTIONS):
                continue
            found.append(f"{rel}:{line}: imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_layers(package: str) -> None:
    assert _violations(package) == []


def test_every_package_has_its_rule() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(ALLOWED)


def test_the_check_finds_a_lazy_import_against_the_rules(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from hub.records import Alert\n    import registry\n")
    assert [name for _, name in _imports(module)] == ["hub.records", "registry"]


def test_every_exception_is_still_needed() -> None:
    for (rel, module), _why in EXCEPTIONS.items():
        names = [name for _, name in _imports(ROOT / rel)]
        assert any(n == module or n.startswith(module + ".") for n in names), (rel, module)


# Inside the hub, its layers (docs/architecture.md): what each folder may import of the
# hub besides itself. The foundation (configuration, errors, records, metrics) serves all.
HUB_FOUNDATION = frozenset({"hub.config", "hub.errors", "hub.records", "hub.metrics"})
HUB_LAYERS: dict[str, frozenset[str]] = {
    "hub.counting": HUB_FOUNDATION,  # the rules: no database, no network
    "hub.store": HUB_FOUNDATION
    | {"hub.counting", "hub.enrolments", "hub.upstream.records", "hub.upstream.visits"},
    "hub.ingest": HUB_FOUNDATION | {"hub.counting", "hub.store"},
    "hub.upstream": HUB_FOUNDATION | {"hub.store"},
}


def _hub_module(name: str) -> str:
    """The hub's layer a module name belongs to (``hub.upstream.records`` stays whole: the
    store may use the records and the visits' pairing of the upstream layer, not its
    network side)."""
    parts = name.split(".")
    if len(parts) > 2 and parts[1] == "upstream" and parts[2] in ("records", "visits"):
        return ".".join(parts[:3])
    return ".".join(parts[:2])


@pytest.mark.parametrize("layer", sorted(HUB_LAYERS))
def test_the_hub_s_layers_point_one_way(layer: str) -> None:
    allowed = HUB_LAYERS[layer]
    found = []
    for path in sorted((ROOT / layer.replace(".", "/")).rglob("*.py")):
        for line, name in _imports(path):
            if not name.startswith("hub."):
                continue
            target = _hub_module(name)
            if target.startswith(layer) or target in allowed:
                continue
            found.append(f"{path.relative_to(ROOT).as_posix()}:{line}: imports {name}")
    assert found == []


def test_only_the_web_and_the_command_reach_the_whole_hub() -> None:
    found = [
        f"{path.relative_to(ROOT).as_posix()}:{line}: imports {name}"
        for path in sorted((ROOT / "hub").rglob("*.py"))
        if not path.relative_to(ROOT).as_posix().startswith("hub/web/")
        for line, name in _imports(path)
        if name.startswith(("hub.web", "hub.service")) and path.name != "service.py"
    ]
    assert found == []
