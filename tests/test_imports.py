"""The package's import graph (an AST pass over samic/, every import statement, module level
or inside functions, plus the CLI's command table) has no cycle; nothing imports the CLI; and
no code picks a scan backend or traces scans by replacing module attributes."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "samic"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, importer: str, level: int, is_package: bool) -> str:
    if level:  # relative import
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - (level - 1)]
        module = ".".join(base + ([module] if module else []))
    return module


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", name, node.level, is_package)
                # "from samic.codec import bitstream" imports the submodule samic.codec.bitstream
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            elif (isinstance(node, ast.Assign) and name == "samic.cli"
                  and any(isinstance(t, ast.Name) and t.id == "COMMAND_MODULES" for t in node.targets)):
                targets = [elt.value for elt in node.value.elts]  # imported by name at start-up
            graph[name] |= {t for t in targets if t in MODULES and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_real_imports():
    graph = import_graph()
    assert "samic.entropy.latent_codec" in graph["samic.models.samic"]
    assert "samic.codec.bitstream" in graph["samic.codec.api"]  # from samic.codec import bitstream
    assert "samic.commands.compress" in graph["samic.cli"]  # the command table
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_samic_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_nothing_imports_the_cli():
    importers = sorted(name for name, targets in import_graph().items() if "samic.cli" in targets)
    assert importers == [], f"{importers} import samic.cli; shared errors live in samic.errors"


def test_no_code_replaces_module_attributes_to_pick_or_trace_a_scan():
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr == "selective_scan":
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_cli_parser_does_not_import_torch():
    """`samic --help` and user errors (checked before any slow work) stay fast: building the
    parser of every command imports neither torch nor numba."""
    import subprocess
    import sys

    code = ("import sys, samic.cli; samic.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'numba', 'skimage', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
