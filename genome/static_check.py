"""A cheap static check that a genome could run: every name it reads is defined, and every module
it imports can be found.

    report = check_static(source)         # CheckReport of Problem(line, code, message)
    report = check_all(source)            # the contract check and this one, in line order

Codes: `undefined-name` (a name read somewhere that no scope, import or builtin defines),
`unresolved-import` (the top-level module of an import is not installed; `evolve` always
counts as found, the supervisor provides it), `relative-import` (a genome is one file).
Scopes come from the standard `symtable` module, so function locals, closures, class bodies and
comprehensions are handled as Python does. Imports inside a `try:` are not checked (the usual
"optional dependency" idiom). Module lookups use `importlib.util.find_spec` on the top-level
name only, which finds a module without importing it (no torch import, no side effects).

What it does not do: type checking, attribute checks (`torch.nn.Linearr` passes), argument
counts, or order of definition at module level. It is a filter for crossover and mutation
children, not a compiler; the real test is the evaluation.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import symtable
from functools import lru_cache

from genome.contract import CheckReport, Problem, check_tree, parse

MODULE_DUNDERS = {"__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__",
                  "__annotations__", "__builtins__", "__path__", "__dict__"}
ALWAYS_FOUND = {"evolve"}               # provided by the supervisor at run time


@lru_cache(maxsize=256)
def module_found(top: str) -> bool:
    if top in ALWAYS_FOUND:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _tables(table: symtable.SymbolTable):
    yield table
    for child in table.get_children():
        yield from _tables(child)


def _defined_globals(top: symtable.SymbolTable) -> set[str]:
    names = set(dir(builtins)) | MODULE_DUNDERS
    for table in _tables(top):
        for sym in table.get_symbols():
            if table is top and (sym.is_assigned() or sym.is_imported() or sym.is_namespace()):
                names.add(sym.get_name())
            elif sym.is_declared_global() and sym.is_assigned():
                names.add(sym.get_name())
    return names


def _first_load_line(tree: ast.AST, names: set[str]) -> dict[str, int]:
    lines: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load):
            if node.id not in lines or node.lineno < lines[node.id]:
                lines[node.id] = node.lineno
    return lines


def _undefined_names(source: str, tree: ast.Module, star_import: bool) -> list[Problem]:
    if star_import:
        return []                                # `import *`: names cannot be known statically
    try:
        top = symtable.symtable(source, "genome", "exec")
    except (SyntaxError, ValueError, RecursionError):
        return []                                # the contract check reports what does not parse
    defined = _defined_globals(top)
    missing = set()
    for table in _tables(top):
        for sym in table.get_symbols():
            if not sym.is_referenced() or sym.get_name() in defined:
                continue
            if table is top or sym.is_global():
                missing.add(sym.get_name())
    if not missing:
        return []
    lines = _first_load_line(tree, missing)
    return [Problem(line, "undefined-name", f"name {name!r} is not defined")
            for name, line in lines.items()]


def _imports(body: list[ast.stmt], in_try: bool, out: list[tuple[ast.stmt, bool]]) -> None:
    """Every import statement with whether it sits inside a try (statements only, no exprs)."""
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            out.append((stmt, in_try))
            continue
        inner = in_try or isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar"
        for field in ("body", "orelse", "finalbody"):
            _imports(getattr(stmt, field, None) or [], inner, out)
        for handler in getattr(stmt, "handlers", None) or []:
            _imports(handler.body, inner, out)
        for case in getattr(stmt, "cases", None) or []:
            _imports(case.body, inner, out)


def _import_problems(imports: list[tuple[ast.stmt, bool]]) -> list[Problem]:
    problems = []
    for node, in_try in imports:
        if isinstance(node, ast.ImportFrom) and node.level:
            problems.append(Problem(node.lineno, "relative-import",
                                    "relative import in a single-file genome"))
            continue
        if in_try:
            continue
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            modules = [node.module] if node.module else []
        for module in modules:
            top = module.split(".")[0]
            if not module_found(top):
                problems.append(Problem(node.lineno, "unresolved-import",
                                        f"module {top!r} is not installed"))
    return problems


def check_tree_static(source: str, tree: ast.Module) -> CheckReport:
    """check_static for source already parsed into `tree`."""
    imports: list[tuple[ast.stmt, bool]] = []
    _imports(tree.body, False, imports)
    star = any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
               for n, _ in imports)
    problems = set(_undefined_names(source, tree, star)) | set(_import_problems(imports))
    return CheckReport(tuple(sorted(problems)))


def check_static(source: str) -> CheckReport:
    """Undefined names and unresolvable imports of `source` (syntax errors as in contract)."""
    tree, problem = parse(source)
    return CheckReport((problem,)) if tree is None else check_tree_static(source, tree)


def check_all(source: str) -> CheckReport:
    """The contract check and the static check together, in line order, without duplicates."""
    tree, problem = parse(source)
    if tree is None:
        return CheckReport((problem,))
    both = set(check_tree(tree).problems) | set(check_tree_static(source, tree).problems)
    return CheckReport(tuple(sorted(both)))
