"""The layer picture of docs/architecture.md, enforced: no import cycle, no import upward.

Every ``import`` statement of every module under ``provisioner/`` counts, wherever
it is written (module level or inside a function: a lazy import only hides a
cycle, it does not remove it). Importing ``a.b.c`` also imports the packages
``a`` and ``a.b``: their ``__init__`` modules are edges too (unless the importer
lives in them). The migration scripts are checked by file (they are not
importable by name).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "provisioner"
VERSIONS = PACKAGE / "db" / "migrations" / "versions"

#: the domain: pure code over documents, bundles, keys (no database, no services)
DOMAIN = (
    "provisioner.bundles",
    "provisioner.config",
    "provisioner.security",
    "provisioner.canonical",
    "provisioner.clock",
    "provisioner.errors",
    "provisioner.identifiers",
)
INTERFACES = ("provisioner.cli", "provisioner.web")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if VERSIONS not in p.parents}


def _resolve(name: str) -> str | None:
    """The module of the package an imported name lives in (``a.b.func`` -> ``a.b``)."""
    modules = _modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(path: Path, module: str) -> set[str]:
    """Dotted names imported by the file, relative imports resolved, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _edges_of(path: Path, module: str) -> set[str]:
    modules = _modules()
    own = {".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 2)}
    out: set[str] = set()
    for name in _imported_names(path, module):
        if name.split(".")[0] != "provisioner":
            continue
        target = name if name in modules else _resolve(name)
        if target is None or target in own:  # its own packages: already being imported
            continue
        out.add(target)
        parts = target.split(".")
        out.update(
            p
            for p in (".".join(parts[:n]) for n in range(1, len(parts)))
            if p not in own and p in modules
        )
    out.discard(module)
    return out


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    return {m: frozenset(_edges_of(p, m)) for m, p in _modules().items()}


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _leaves() -> set[str]:
    """Modules that import nothing of the package (errors, clock, identifiers...)."""
    return {m for m, edges in _graph().items() if not edges and "." in m}


# --------------------------------------------------------------------------- the checker


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    graph = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a"}),
        "d": frozenset({"a"}),
    }
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_lazy_and_relative_imports_are_edges(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from provisioner.services import configs\n"
        "    import provisioner.db.models\n",
        encoding="utf-8",
    )
    edges = _edges_of(source, "provisioner.config.m")
    assert {
        "provisioner.services.configs",
        "provisioner.db.models",
        "provisioner.services",
        "provisioner.db",
    } <= edges
    assert "provisioner" not in edges
    assert "provisioner.config" not in edges


def test_the_graph_covers_the_package() -> None:
    graph = _graph()
    assert len(graph) > 80
    assert "provisioner.services.configs" in graph["provisioner.services.transfers"]


# --------------------------------------------------------------------------- the rules


def test_no_import_cycle_between_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (lazy imports included): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (
            ("provisioner.db",),
            (
                "provisioner.services",
                "provisioner.cli",
                "provisioner.web",
                "provisioner.config",
                "provisioner.bundles",
                "provisioner.security",
            ),
        ),
        (DOMAIN, ("provisioner.db", "provisioner.services", *INTERFACES)),
        (("provisioner.services",), INTERFACES),
    ],
    ids=["db", "domain", "services"],
)
def test_no_import_runs_upward(layer: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    bad = sorted(
        f"{module} -> {target}"
        for module, edges in _graph().items()
        if _within(module, layer)
        for target in edges
        if _within(target, forbidden) and not _within(target, layer)
    )
    assert not bad, bad


def test_the_database_layer_imports_only_itself_and_leaf_modules() -> None:
    leaves = _leaves()
    bad = sorted(
        f"{module} -> {target}"
        for module, edges in _graph().items()
        if _within(module, ("provisioner.db",))
        for target in edges
        if not _within(target, ("provisioner.db",)) and target not in leaves
    )
    assert not bad, bad


def test_the_transaction_context_is_a_leaf_of_the_services() -> None:
    """Every service may import it, including those the composition root wires in."""
    edges = _graph()["provisioner.services.transaction"]
    assert not [
        e for e in edges if _within(e, ("provisioner.services",)) and e != "provisioner.services"
    ]


def test_the_core_does_not_import_the_checks_registered_on_it() -> None:
    """The quota on new versions is registered by the composition root, not imported."""
    assert (
        "provisioner.services.provisioning.quotas" not in _graph()["provisioner.services.configs"]
    )
    assert "provisioner.services.provisioning.quotas" in _graph()["provisioner.services.context"]


@pytest.mark.parametrize("script", sorted(p.name for p in VERSIONS.glob("*.py")))
def test_migrations_run_no_live_code(script: str) -> None:
    """An old migration must behave as when it was written: it imports nothing of the
    package but the frozen helpers under ``db/migrations/``."""
    path = VERSIONS / script
    names = _imported_names(path, "provisioner.db.migrations.versions.script")
    live = sorted(
        n
        for n in names
        if n.startswith("provisioner") and not _within(n, ("provisioner.db.migrations",))
    )
    assert not live, f"{script} imports {live}"


def test_no_module_uses_another_modules_private_names() -> None:
    """``module._name`` across modules is a private helper used as API: make it public."""
    bad = []
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {
            alias.asname or alias.name.rpartition(".")[2]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("provisioner")
            for alias in node.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(f"{module}: {node.value.id}.{node.attr}")
    assert not bad, bad


#: driver-level calls that only ``provisioner/db/`` makes (bulk loads, pipelines, the scope)
DRIVER_LEVEL = ("driver_connection", "dbapi_connection", ".pipeline(", ".copy(", "set_config(")


def test_driver_level_code_lives_in_db() -> None:
    """COPY, psycopg pipelines, driver cursors and the row-level security setting are
    ``db/``'s (``db/bulk.py``, ``db/pipeline.py``, ``db/tenancy.py``); a service calls those."""
    bad = []
    for module, path in _modules().items():
        if _within(module, ("provisioner.db",)):
            continue
        source = path.read_text(encoding="utf-8")
        bad += [f"{module}: {call}" for call in DRIVER_LEVEL if call in source]
    assert not bad, bad
