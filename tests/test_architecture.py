"""The package's shape, read from its own imports (AST only: nothing is imported or run).

- no import circle between the modules of ``playground/`` (imports inside functions count);
- no name with a leading underscore imported from another module of the package;
- an import inside a function only for a module that brings a heavy optional dependency;
- Streamlit only in ``playground/ui/``; FastAPI, uvicorn and argparse only in the server and the CLI;
  the core never imports the CLI, the server or the pages.

``python3 ../shared/tools/import_graph.py playground`` gives the same circle and private-import
answer from the command line.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "playground"

LAZY_ALLOWED = {
    "playground.server": "FastAPI and uvicorn: only `python -m playground serve` needs them",
    "playground.spark": "pyspark: optional, only `spark-classify` needs it",
    "playground.tuning": "torch: only a training needs it, not listing models, --help or classify's import",
    "playground.label_prior": "SciPy and scikit-learn (165 MB, 1.5 s with pandas): only the opt-in label-name prior "
                              "needs them, not a classify request or the server",
}
"""Package modules that may be imported inside a function, and why (a heavy optional dependency)."""
FRONT_ENDS = {"playground.cli", "playground.server", "playground.__main__"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # a module of the package, or an outside top-level name
    name: str | None  # the name taken with ``from … import name``
    inside_function: bool
    line: int


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, _resolve(alias.name), None, in_function, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in MODULES else _resolve(base)
                    found.append(Import(module, target, alias.name, in_function, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return found


def _resolve(name: str) -> str:
    """The package module an import names (its nearest enclosing one), else the outside top-level name."""
    probe = name
    while probe and probe not in MODULES:
        probe = probe.rpartition(".")[0]
    return probe or name.split(".")[0]


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target not in (imp.module, "playground"):
            graph[imp.module].add(imp.target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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


def test_the_package_is_read():
    assert {"playground.engine", "playground.store", "playground.training", "playground.ui.widgets"} <= set(MODULES)
    assert any(imp.target == "playground.store" for imp in IMPORTS)


def test_no_import_circle():
    cycles = _cycles(_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_finder_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_crosses_modules():
    private = [f"{imp.module}:{imp.line} takes {imp.target}.{imp.name}" for imp in IMPORTS
               if imp.name and imp.name.startswith("_") and not imp.name.startswith("__")
               and (imp.target in MODULES or imp.target == "playground") and imp.target != imp.module]
    assert not private, "\n".join(private)


def test_package_modules_are_imported_inside_functions_only_for_heavy_dependencies():
    lazy = [f"{imp.module}:{imp.line} imports {imp.target} inside a function" for imp in IMPORTS
            if imp.inside_function and imp.target in MODULES and imp.target not in LAZY_ALLOWED]
    assert not lazy, "\n".join(lazy)


def test_streamlit_only_in_the_pages():
    outside = [f"{imp.module}:{imp.line}" for imp in IMPORTS
               if imp.target == "streamlit" and not imp.module.startswith("playground.ui")]
    assert not outside, f"streamlit imported outside playground/ui: {outside}"


def test_the_core_never_imports_a_front_end():
    front = {"fastapi", "starlette", "uvicorn", "argparse", "streamlit"}
    wrong = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in IMPORTS
             if imp.module not in FRONT_ENDS and not imp.module.startswith("playground.ui")
             and (imp.target in front or imp.target in FRONT_ENDS or imp.target.startswith("playground.ui"))]
    assert not wrong, "\n".join(wrong)


def test_pages_have_no_bare_conditional_expression():
    """``st.warning(…) if … else st.error(…)`` as a statement: Streamlit's magic would ``st.write`` its value
    (a help box for ``DeltaGenerator``); pages call ``widgets.show_notice`` instead."""
    bare = []
    for module, path in MODULES.items():
        if module.startswith("playground.ui"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Expr) and isinstance(node.value, (ast.IfExp, ast.BoolOp)):
                    bare.append(f"{module}:{node.lineno}")
    assert not bare, f"bare conditional expressions in pages: {bare}"



def test_page_scripts_have_no_bare_string_below_their_docstring():
    """A string on its own line in a page script (an attribute's docstring, say) is printed on the page by
    Streamlit's magic, above the title; page scripts say such things in comments."""
    pages = re.findall(r'st\.Page\("([^"]+)"', (ROOT / "app.py").read_text(encoding="utf-8"))
    assert pages
    bare = []
    for page in pages:
        tree = ast.parse((ROOT / page).read_text(encoding="utf-8"))
        bare += [f"{page}:{node.lineno}" for node in tree.body[1:]
                 if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)]
    assert not bare, f"bare strings Streamlit would print: {bare}"
