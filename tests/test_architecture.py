"""The rooms of ``guard/`` (DESIGN §7), held by reading the source with ``ast``.

- ``guard/core/`` is pure: it imports only the standard library, ``guard.core`` and
  ``guard.errors``;
- only ``guard/entry/`` reads the clock; only ``entry/`` and ``config/`` read the environment;
- only ``guard/entry/wiring.py`` builds engines and clients (its store part in ``stores.py``);
- ``guard.chain`` (shipped to applications) imports only the standard library, and its
  exports are pinned.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import guard.chain

GUARD = Path(guard.chain.__file__).parent
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "time", "time_ns"})
CLOCK_OWNERS = frozenset({"datetime", "date", "time"})
BUILDERS = frozenset({"create_engine", "Client", "AsyncClient", "WebClient", "WebhookClient",
                      "SocketModeClient", "Store", "AdminClient"})
SIMULATOR = "sim/"  # the simulated world has its own clock and its own servers
ROOT = ("entry/wiring.py", "entry/stores.py")  # the composition root and its store part
CHAIN_EXPORTS = ["ModelChain", "NoModelError", "Verdict", "anthropic_client",
                 "async_anthropic_client", "classify"]


def modules(under: str = "") -> Iterator[tuple[str, ast.Module]]:
    """``(path relative to guard/, parsed module)`` of every module below ``under``."""
    for path in sorted((GUARD / under).rglob("*.py")):
        yield path.relative_to(GUARD).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import, relative imports resolved to ``guard.…``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, ("guard." if node.level else "") + (node.module or "")


def pure_import(name: str) -> bool:
    """Whether ``name`` is allowed in the pure core."""
    top = name.split(".", maxsplit=1)[0]
    return top in STDLIB or name == "guard.errors" or name.startswith("guard.core")


def clock_reads(tree: ast.Module) -> Iterator[int]:
    """Lines that call ``datetime.now()``, ``date.today()``, ``time.time()`` and the like."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_CALLS and isinstance(node.func.value, ast.Name)
                and node.func.value.id in CLOCK_OWNERS):
            yield node.lineno


def environment_reads(tree: ast.Module) -> Iterator[int]:
    """Lines that touch ``os.environ`` or call ``os.getenv``."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name) and node.value.id == "os"):
            yield node.lineno


def constructions(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``(line, name)`` of every call to a builder of engines and clients."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in BUILDERS:
            yield node.lineno, name


def test_the_top_of_guard_is_laid_out_by_role() -> None:
    """guard/ holds the rooms of DESIGN §7 and nothing else."""
    found = {p.name + ("/" if p.is_dir() else "") for p in GUARD.iterdir()
             if p.name != "__pycache__"}
    assert found == {"core/", "adapters/", "shell/", "entry/", "config/", "sim/", "backtest/",
                     "errors.py", "chain.py", "__init__.py", "__main__.py"}


def test_the_core_imports_only_the_standard_library_and_itself() -> None:
    """No module of guard/core/ imports a library, an adapter, the shell or the config."""
    bad = [f"{path}:{line} imports {name}" for path, tree in modules("core")
           for line, name in imported(tree) if not pure_import(name)]
    assert bad == []


def test_the_purity_rule_catches_an_io_import() -> None:
    """The rule above would flag httpx, SQLAlchemy, the shell and the adapters."""
    tree = ast.parse("import httpx\nfrom sqlalchemy import select\nfrom guard.shell import tick\n"
                     "from guard.adapters.sinks import FileSinks\nfrom decimal import Decimal\n")
    assert [name for _, name in imported(tree) if not pure_import(name)] == [
        "httpx", "sqlalchemy", "guard.shell", "guard.adapters.sinks"]


def test_only_the_entry_points_read_the_clock() -> None:
    """Time is an argument everywhere but guard/entry/ (and the simulator's own clock)."""
    bad = [f"{path}:{line}" for path, tree in modules()
           if not path.startswith(("entry/", SIMULATOR)) for line in clock_reads(tree)]
    assert bad == []


def test_the_clock_rule_catches_a_clock_read() -> None:
    """``datetime.now(UTC)`` and ``time.time()`` are found; ``clock.now()`` of a port is not."""
    tree = ast.parse("datetime.now(UTC)\ntime.time()\nself.clock.now()\nday.today\n")
    assert list(clock_reads(tree)) == [1, 2]


def test_only_entry_and_config_read_the_environment() -> None:
    """``os.environ`` is read by the entry points and the config loader; guard.chain reads
    the application's own environment by contract."""
    allowed = ("entry/", "config/", "chain.py", SIMULATOR)
    bad = [f"{path}:{line}" for path, tree in modules() if not path.startswith(allowed)
           for line in environment_reads(tree)]
    assert bad == []


def test_engines_and_clients_are_built_only_in_wiring() -> None:
    """One composition root: create_engine, httpx/Slack clients, Store and AdminClient."""
    bad = [f"{path}:{line} builds {name}" for path, tree in modules()
           if path not in ROOT and not path.startswith(SIMULATOR)
           for line, name in constructions(tree)]
    assert bad == []


def test_wiring_does_build_the_real_parts() -> None:
    """The composition root is where the builders are (so the rule above is not vacuous)."""
    trees = [tree for path, tree in modules("entry") if path in ROOT]
    assert {name for tree in trees for _, name in constructions(tree)} >= {
        "create_engine", "Client", "WebClient", "WebhookClient", "SocketModeClient", "Store",
        "AdminClient"}


def test_the_application_library_imports_only_the_standard_library() -> None:
    """guard.chain runs inside applications: nothing of the daemon may come with it. The one
    import beyond the standard library is the SDK, for type checking and inside the helpers
    that build an SDK client (an application that calls them has the SDK)."""
    (tree,) = [tree for path, tree in modules() if path == "chain.py"]
    at_import = [name for _, name in imported(ast.Module(body=[
        node for node in tree.body if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.If)
    ], type_ignores=[]))]
    assert [n for n in at_import if n.split(".", maxsplit=1)[0] not in STDLIB] == []
    guarded = {node.lineno for node in tree.body if isinstance(node, ast.If)
               and ast.unparse(node.test) == "TYPE_CHECKING"}
    helpers = [node for node in tree.body if isinstance(node, ast.FunctionDef)
               and node.name.endswith("anthropic_client")]
    lazy = {line for helper in helpers for line, _ in imported(ast.Module(helper.body, []))}
    outside = [(line, name) for line, name in imported(tree)
               if name.split(".", maxsplit=1)[0] not in STDLIB]
    assert outside and all(name == "anthropic" for _, name in outside)
    assert all(line in lazy or line - 1 in guarded for line, _ in outside), outside


def test_the_application_library_exports_are_pinned() -> None:
    """guard.chain's public API is exactly these names, as httpx pins its ``__all__``."""
    assert sorted(guard.chain.__all__) == CHAIN_EXPORTS


@pytest.mark.parametrize("room", ["core", "adapters", "shell", "entry"])
def test_every_room_is_a_package_with_modules(room: str) -> None:
    """Each room has an ``__init__.py`` and at least one module of its own."""
    assert (GUARD / room / "__init__.py").is_file()
    assert len([p for p in (GUARD / room).rglob("*.py") if p.name != "__init__.py"]) >= 3
