"""The import graph (issue 14): edge -> kernel <- registry, models below both, the CLI on top.

Read with `ast` from the source files, so every import counts: at module level,
inside functions, and under `if TYPE_CHECKING:`. A function-level import that
hides a cycle is still a cycle. Each rule fails naming the offending imports
(file:line), so a new arrow is seen where it is written.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = ("models", "kernel", "edge", "registry", "mamoru", "benchmarks")

# Which top-level package may import which (besides itself). Nothing imports benchmarks.
ALLOWED: Mapping[str, frozenset[str]] = {
    "models": frozenset(),
    "kernel": frozenset({"models"}),
    "edge": frozenset({"kernel", "models"}),
    "registry": frozenset({"kernel", "models"}),
    "mamoru": frozenset({"models", "kernel", "edge", "registry"}),
    "benchmarks": frozenset({"models", "kernel", "edge", "registry", "mamoru"}),
}

# Inside the registry, joint use is on top: only these may import registry.joint_use.
JOINT_USE_IMPORTERS = frozenset({"registry.api", "registry.joint_use"})

# Known imports that still tie registry subpackages in a cycle (issue 14, item 3), each with
# why it is there and the way out. Any other arrow that closes a cycle fails. None today: key
# rotation, the last one, is a service on the registry's files as a whole and sits in
# registry.backup, above the context and the keys it replaces.
KNOWN_TANGLES: Mapping[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module of ours (the deepest one that exists)
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def module_files(roots: Iterable[str] = OURS) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ours (a package is its __init__)."""
    files = {}
    for root in roots:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def _imported_names(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`


def imports(files: Mapping[str, Path]) -> list[Import]:
    """Every import of one of our modules, wherever in the file it is written."""
    found = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = set()
            for name in _imported_names(node, module, is_package):
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
            # `from pkg import module` names pkg and pkg.module: keep only the deepest.
            for target in targets:
                if not any(other.startswith(target + ".") for other in targets):
                    where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
                    found.append(Import(module, target, where))
    return found


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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


def registry_node(module: str) -> str | None:
    """A registry module's node in the subpackage graph: its subpackage, the context, or core."""
    parts = module.split(".")
    if parts[0] != "registry":
        return None
    if len(parts) > 2 or (len(parts) == 2 and (REPO / "registry" / parts[1]).is_dir()):
        return f"registry.{parts[1]}"
    return "registry.context" if module == "registry.context" else "registry.core"


def top(module: str) -> str:
    return module.split(".")[0]


def _graph() -> list[Import]:
    return imports(module_files())


def _report(title: str, offending: Iterable[object]) -> str:
    return title + "\n" + "\n".join(f"  {line}" for line in offending)


def check_layers(found: Iterable[Import]) -> list[Import]:
    return [i for i in found
            if top(i.source) != top(i.target) and top(i.target) not in ALLOWED[top(i.source)]]


def check_module_cycles(found: Iterable[Import]) -> list[str]:
    edges: defaultdict[str, set[str]] = defaultdict(set)
    for i in found:
        edges[i.source].add(i.target)
    return [" -> ".join(component) for component in cycles(edges)]


def check_upper_layer(found: Iterable[Import]) -> list[Import]:
    wrong = []
    for i in found:
        source = registry_node(i.source)
        if source == "registry.api" and top(i.target) == "mamoru":
            wrong.append(i)
        if (registry_node(i.target) == "registry.joint_use" and source is not None
                and source not in JOINT_USE_IMPORTERS):
            wrong.append(i)
    return wrong


def check_registry_packages(found: Iterable[Import],
                            known: Mapping[tuple[str, str], str] = KNOWN_TANGLES) -> list[str]:
    """Cycles among registry's subpackages, known tangles left out; each with its imports."""
    edges: defaultdict[str, set[str]] = defaultdict(set)
    lines: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for i in found:
        source, target = registry_node(i.source), registry_node(i.target)
        if source is None or target is None or source == target:
            continue
        if (i.source, target) in known:
            continue
        edges[source].add(target)
        lines[(source, target)].append(str(i))
    problems = []
    for component in cycles(edges):
        members = set(component)
        arrows = [line for (a, b), ls in sorted(lines.items())
                  if a in members and b in members for line in ls]
        problems.append(_report(f"cycle among {', '.join(component)}:", arrows))
    return problems


# --- the tests ----------------------------------------------------------------------------------


def test_top_level_packages_import_only_downwards() -> None:
    """models -> nothing; kernel -> models; edge, registry -> kernel, models; mamoru -> all."""
    wrong = check_layers(_graph())
    assert not wrong, _report("imports against the layer table:", wrong)


def test_no_module_imports_itself_through_a_cycle() -> None:
    found = check_module_cycles(_graph())
    assert not found, _report("import cycles among modules:", found)


def test_registry_api_and_the_registry_below_joint_use_stay_below() -> None:
    """registry/api never imports mamoru (an ApiHost is passed in); joint use depends on the
    registry, never the reverse (issue 14 item 2)."""
    wrong = check_upper_layer(_graph())
    assert not wrong, _report("imports of an upper layer from below:", wrong)


def test_registry_subpackages_form_no_cycle() -> None:
    problems = check_registry_packages(_graph())
    assert not problems, "\n".join(problems)


def test_known_tangles_are_still_there() -> None:
    """An allow-listed import that is gone must leave the list (so the list only shrinks)."""
    present = {(i.source, registry_node(i.target)) for i in _graph()}
    stale = [f"{source} -> {target}" for source, target in KNOWN_TANGLES
             if (source, target) not in present]
    assert not stale, _report("KNOWN_TANGLES entries no longer needed:", stale)


def test_the_checks_can_fail() -> None:
    """Each check, fed one bad import, names it: the rules above are not vacuous."""
    files = {"kernel.a": "kernel/a.py:3", "edge.b": "edge/b.py:4", "registry.api.c": "x:1"}
    assert check_layers([Import("kernel.a", "edge.b", files["kernel.a"])])
    assert check_layers([Import("models.m", "kernel.a", "models/m.py:1")])
    assert check_layers([Import("mamoru.cli", "benchmarks.soak", "mamoru/cli.py:1")])
    assert not check_layers([Import("edge.b", "kernel.a", files["edge.b"])])
    assert check_module_cycles([Import("edge.b", "edge.c", "b:1"),
                                Import("edge.c", "edge.b", "c:1")])
    assert check_upper_layer([Import("registry.api.c", "mamoru.wiring", "x:1")])
    assert check_upper_layer([Import("registry.notice.page", "registry.joint_use.sync", "y:1")])
    assert check_registry_packages([
        Import("registry.watchlist.entries", "registry.breach.incident", "w:1"),
        Import("registry.breach.incident", "registry.watchlist.stop_use", "b:2"),
    ], known={})


def conftest_imports(root: Path = REPO / "tests") -> list[str]:
    """Test modules that import a conftest: fixtures are shared through tests/conftest.py and
    helpers through plain modules (tests/registries.py, ...), so a conftest is never a library
    (two merges this round broke collection by importing names a conftest no longer had)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(root)}:{node.lineno} imports {name}"
                      for name in names if name.split(".")[-1] == "conftest"]
    return found


def test_no_test_module_imports_a_conftest(tmp_path: Path) -> None:
    assert conftest_imports() == []
    (tmp_path / "test_x.py").write_text("from tests.registry.conftest import T0\n")
    assert conftest_imports(tmp_path) == ["test_x.py:1 imports tests.registry.conftest"]
