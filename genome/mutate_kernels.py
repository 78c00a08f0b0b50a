"""Mutation: replace a reference PyTorch expression by the fused kernel from kernels/.

    use_kernel(parent, rng) -> OpResult
    # "kernel rms_norm: F.rms_norm(x, (x.size(-1),)) -> kernels.rms_norm(x) in rms_norm"

The table is `kernels.SWAPS` (name -> Swap with `pattern`, `replacement`, `in_forward`), read
when the operator first runs, so a kernel added there is used without a change here. A pattern
such as "F.rms_norm({x}, ({x}.size(-1),))" matches an expression of the genome when their
syntax trees are equal with each {placeholder} standing for any sub-expression (the same one
each time it appears); whitespace, parentheses and the spelling of the functional module
(F, torch.nn.functional, nn.functional) do not matter. The relu2 swap also takes the other
spellings of ReLU^2 that genome.mutate_categorical recognises (F.relu(x) ** 2, .pow(2)).
Swaps with in_forward False (training losses) are not made inside a method named `forward`.
The child gets `import kernels` after its last top-level import if it has none.

Run: python -m genome mutate FILE --operator kernel

What it does not do: rewrite code into a pattern first (a rotary helper written with chunk()
does not match the table's torch.cat form), or check that kernels is importable where the
genome will run (the supervisor's job; on CPU the kernels run their PyTorch references).
"""

from __future__ import annotations

import ast
import random
import re
from functools import lru_cache

import libcst as cst

from genome.cst_tree import INSERT_AFTER, apply_edits, code, find_nodes, parse, template
from genome.mutate_categorical import activation_site
from genome.record import Genome
from genome.result import OpResult, finish, source_of

PLACEHOLDER = re.compile(r"\{(\w+)\}")
_FUNCTIONAL = re.compile(r"\b(torch\.nn\.functional|nn\.functional)\.")


@lru_cache(maxsize=1)
def swap_table() -> tuple | str:
    """((name, pattern tree, replacement, in_forward), ...) from kernels.SWAPS, or a reason."""
    try:
        from kernels import SWAPS          # imports torch: only when the operator runs
    except Exception as e:  # a broken kernels package must not break mutation
        return f"kernels is not importable: {type(e).__name__}: {e}"
    table = []
    for name, swap in SWAPS.items():
        try:
            tree = ast.parse(_normal(PLACEHOLDER.sub(r"__ph_\1", swap.pattern)), mode="eval").body
        except SyntaxError:
            continue
        table.append((name, tree, swap.replacement, bool(swap.in_forward)))
    return tuple(table)


def _normal(text: str) -> str:
    return _FUNCTIONAL.sub("F.", text)


def _match(pattern: ast.AST, node: ast.AST, bound: dict[str, ast.AST]) -> bool:
    if isinstance(pattern, ast.Name) and pattern.id.startswith("__ph_"):
        name = pattern.id[5:]
        if name in bound:
            return ast.dump(bound[name]) == ast.dump(node)
        bound[name] = node
        return True
    if type(pattern) is not type(node):
        return False
    for field in pattern._fields:
        if field == "ctx":
            continue
        a, b = getattr(pattern, field, None), getattr(node, field, None)
        if isinstance(a, list):
            if not isinstance(b, list) or len(a) != len(b):
                return False
            if not all(_match(x, y, bound) if isinstance(x, ast.AST) else x == y
                       for x, y in zip(a, b)):
                return False
        elif isinstance(a, ast.AST):
            if not isinstance(b, ast.AST) or not _match(a, b, bound):
                return False
        elif a != b:
            return False
    return True


def _root_key(tree: ast.AST) -> tuple:
    """What a candidate's root must look like: the call's last name, or the operator."""
    if isinstance(tree, ast.Call):
        func = tree.func
        return ("call", func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    if isinstance(tree, ast.BinOp):
        return ("binop", type(tree.op).__name__)
    return ("other",)


def _cst_key(node: cst.CSTNode) -> tuple:
    if isinstance(node, cst.Call):
        func = node.func
        return ("call", func.attr.value if isinstance(func, cst.Attribute)
                else getattr(func, "value", ""))
    if isinstance(node, cst.BinaryOperation):
        return ("binop", {"Multiply": "Mult", "Add": "Add", "Subtract": "Sub", "Divide": "Div",
                          "Power": "Pow"}.get(type(node.operator).__name__, ""))
    return ("other",)


def _pick_expression(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    return isinstance(node, (cst.Call, cst.BinaryOperation))


def _has_kernels_import(module: cst.Module) -> bool:
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Import) and any(code(a.name) == "kernels" and
                                                         a.asname is None for a in small.names):
                    return True
    return False


def _last_import(module: cst.Module) -> int | None:
    last = None
    for index, stmt in enumerate(module.body):
        if isinstance(stmt, cst.SimpleStatementLine) and \
                all(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
            last = index
        elif isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            break
    return last


def _sites(source: str, table: tuple) -> list[tuple]:
    """[(found, swap name, replacement expression)] in source order."""
    sites = []
    for found in find_nodes(source, _pick_expression):
        node = found.node
        in_forward = found.where.split(".")[-1] == "forward"
        key = _cst_key(node)
        for name, tree, replacement, forward_ok in table:
            if in_forward and not forward_ok:
                continue
            new = None
            if name == "relu2":
                site = activation_site(node)
                if site is not None and site[0] == "relu2":
                    new = template("kernels.relu2(X)", X=site[2])
            if new is None and _root_key(tree) == key:
                try:
                    candidate = ast.parse(_normal(code(node)), mode="eval").body
                except SyntaxError:
                    continue
                bound: dict[str, ast.AST] = {}
                if _match(tree, candidate, bound):
                    text = PLACEHOLDER.sub(lambda mm: ast.unparse(bound[mm.group(1)]), replacement)
                    new = cst.parse_expression(text)
            if new is not None:
                if node.lpar:
                    new = new.with_changes(lpar=node.lpar, rpar=node.rpar)
                sites.append((found, name, new))
                break
    return sites


def use_kernel(parent: Genome | str, rng: random.Random) -> OpResult:
    """Swap one reference expression for its kernel (see the module docstring)."""
    source = source_of(parent)
    module = parse(source) if source is not None else None
    if module is None:
        return OpResult.not_applicable("the source does not parse")
    table = swap_table()
    if isinstance(table, str):
        return OpResult.not_applicable(table)
    sites = _sites(source, table)
    if not sites:
        return OpResult.not_applicable("no expression matches a pattern of kernels.SWAPS")
    found, name, new = rng.choice(sites)
    edits = [(found.index, found.node, new)]
    if not _has_kernels_import(module):
        last = _last_import(module)
        if last is None:
            return OpResult.not_applicable("no top-level import block to add `import kernels` to")
        if last == found.index:
            return OpResult.not_applicable("the match is inside the import block")
        edits.append((last, INSERT_AFTER, cst.parse_statement("import kernels\n")))
    child = apply_edits(source, edits)
    return finish([source], child, f"kernel {name}: {code(found.node)} -> {code(new)} "
                                   f"in {found.where}")
