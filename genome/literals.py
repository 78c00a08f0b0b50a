"""Literal values in genomes: module-level constants, the numbers inside literals, new literals.

- `module_constants(source)`: the top-level `ALL_CAPS = expr` assignments, in source order.
- `slots(expr)`: the numbers inside a literal expression that an operator may change, e.g.
  `0.04` -> one slot, `(0.8, 0.95)` -> two, `2**19` -> the exponent 19, `-1e-3` -> one.
- `number_node(value, like)`: a literal node for a new value in the style of the old one.
- `literal_value(expr)`: the Python value of a literal expression (numbers, strings, booleans,
  tuples of those, `a**b`), or NOT_LITERAL.
- `numeric_values(source)`: name -> value of the constants that are literals or computed from
  literal constants (`MODEL_DIM = DEPTH * ASPECT_RATIO`), for genome.constraints.

What it does not do: decide what to change (the operators) or how much (genome.perturb).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import libcst as cst

from genome.cst_tree import code, find_nodes, parse

ALL_CAPS = re.compile(r"^[A-Z][A-Z0-9_]*$")
NOT_LITERAL = object()


@dataclass(frozen=True)
class ModuleConstant:
    name: str
    value: cst.BaseExpression          # the node in the parsed module (identity matters)
    index: int                         # of its statement in module.body


def _targets(node: cst.CSTNode) -> list[str]:
    """Names bound by an assignment-like node (Name targets, also inside tuples)."""
    target = getattr(node, "target", None)
    out: list[str] = []
    todo = [target] if target is not None else []
    while todo:
        t = todo.pop()
        if isinstance(t, cst.Name):
            out.append(t.value)
        elif isinstance(t, (cst.Tuple, cst.List)):
            todo.extend(e.value for e in t.elements)
    return out


_BINDINGS = (cst.AssignTarget, cst.AnnAssign, cst.AugAssign, cst.For)


def _pick_binding(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    return not scope and isinstance(node, _BINDINGS)


def module_constants(source: str) -> tuple[ModuleConstant, ...]:
    """Top-level `NAME = value` / `NAME: T = value` with an ALL_CAPS name, in source order.
    Names assigned more than once at module scope (outside functions and classes, `if` and
    `for` blocks included) are left out: which value counts is unclear."""
    module = parse(source)
    if module is None:
        return ()
    counts: dict[str, int] = {}
    for binding in find_nodes(source, _pick_binding):
        for name in _targets(binding.node):
            counts[name] = counts.get(name, 0) + 1
    found: list[ModuleConstant] = []
    for index, stmt in enumerate(module.body):
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            target, value = None, None
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                target, value = small.targets[0].target, small.value
            elif isinstance(small, cst.AnnAssign) and small.value is not None:
                target, value = small.target, small.value
            if (isinstance(target, cst.Name) and value is not None and ALL_CAPS.match(target.value)
                    and counts.get(target.value) == 1):
                found.append(ModuleConstant(target.value, value, index))
    return tuple(found)


@dataclass(frozen=True)
class Slot:
    """One number that can be changed in place. For `base**exp`, node is the exponent literal,
    value is the exponent and base is set; otherwise base is None."""
    node: cst.BaseExpression
    value: int | float
    base: int | None = None


def _number(node: cst.BaseExpression) -> int | float | None:
    if isinstance(node, cst.Integer):
        return int(node.value, 0)
    if isinstance(node, cst.Float):
        return float(node.value.replace("_", ""))
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
        inner = _number(node.expression)
        if inner is None:
            return None
        return -inner if isinstance(node.operator, cst.Minus) else inner
    return None


def slots(node: cst.BaseExpression) -> list[Slot]:
    """The changeable numbers of a literal expression (see the module docstring)."""
    if isinstance(node, (cst.Tuple, cst.List)):
        out: list[Slot] = []
        for element in node.elements:
            if isinstance(element, cst.Element):
                out.extend(slots(element.value))
        return out
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Power):
        base, exp = _number(node.left), _number(node.right)
        if isinstance(base, int) and isinstance(exp, int) and base >= 2 and \
                isinstance(node.right, cst.Integer):
            return [Slot(node.right, exp, base)]
        return []
    value = _number(node)
    if value is None or isinstance(node, cst.Imaginary):
        return []
    return [Slot(node, value)]


def number_node(value: int | float, like: cst.BaseExpression) -> cst.BaseExpression:
    """A literal for `value`: an Integer when value is an int, else a Float; negative values get a
    unary minus; underscores are kept when the old literal had them (10_000 -> 20_000), and
    scientific notation when it used it (1e-10 -> 8.73e-11)."""
    old = code(like)
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"{abs(value):_}" if "_" in old else str(abs(value))
        node: cst.BaseExpression = cst.Integer(text)
    elif "e" in old.lower() and value != 0:
        # Keep scientific notation: 3e-3 -> 2.71e-3, not 0.00271.
        mantissa, _, exponent = f"{abs(float(value)):.6e}".partition("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        node = cst.Float(f"{mantissa}e{int(exponent)}")
    else:
        text = repr(abs(float(value)))
        if "_" in old and "e" not in text and abs(value) >= 1000:
            whole, _, frac = text.partition(".")
            text = f"{int(whole):_}.{frac}"
        node = cst.Float(text)
    return cst.UnaryOperation(cst.Minus(), node) if value < 0 else node


def literal_value(node: cst.BaseExpression) -> Any:
    """The value of a literal expression, or NOT_LITERAL."""
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        value = node.evaluated_value
        return value if isinstance(value, str) else NOT_LITERAL
    if isinstance(node, (cst.Tuple, cst.List)):
        items = []
        for element in node.elements:
            if not isinstance(element, cst.Element):
                return NOT_LITERAL
            item = literal_value(element.value)
            if item is NOT_LITERAL:
                return NOT_LITERAL
            items.append(item)
        return tuple(items)
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Power):
        base, exp = _number(node.left), _number(node.right)
        if isinstance(base, int) and isinstance(exp, int) and 0 <= exp <= 64:
            return base ** exp
        return NOT_LITERAL
    value = _number(node)
    return NOT_LITERAL if value is None else value


_BINARY = {cst.Add: lambda a, b: a + b, cst.Subtract: lambda a, b: a - b,
           cst.Multiply: lambda a, b: a * b, cst.Divide: lambda a, b: a / b,
           cst.FloorDivide: lambda a, b: a // b, cst.Modulo: lambda a, b: a % b}
_CALLS = {"math.ceil": math.ceil, "math.floor": math.floor, "max": max, "min": min, "int": int,
          "round": round, "abs": abs}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def evaluate(node: cst.BaseExpression, env: dict[str, Any]) -> Any:
    """The number a constant expression computes from earlier constants (`env`), e.g.
    `math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM`; NOT_LITERAL when it uses anything
    else (a harness value, an unknown function) or would fail."""
    value = literal_value(node)
    if value is not NOT_LITERAL:
        return value
    try:
        if isinstance(node, cst.Name):
            return env.get(node.value, NOT_LITERAL)
        if isinstance(node, cst.BinaryOperation):
            left, right = evaluate(node.left, env), evaluate(node.right, env)
            if not all(_is_number(v) for v in (left, right)):
                return NOT_LITERAL
            if isinstance(node.operator, cst.Power):
                return left ** right if abs(right) <= 64 and abs(left) < 2**16 else NOT_LITERAL
            op = _BINARY.get(type(node.operator))
            return NOT_LITERAL if op is None else op(left, right)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
            inner = evaluate(node.expression, env)
            return -inner if isinstance(inner, (int, float)) else NOT_LITERAL
        if isinstance(node, cst.Call) and code(node.func) in _CALLS and \
                all(a.keyword is None and not a.star for a in node.args):
            args = [evaluate(a.value, env) for a in node.args]
            if args and all(_is_number(v) for v in args):
                return _CALLS[code(node.func)](*args)
    except (ArithmeticError, ValueError, TypeError):
        pass
    return NOT_LITERAL


def numeric_values(source: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """name -> value of the module constants that are literals or computed from literal constants
    (for genome.constraints); constants that depend on anything else are left out. `overrides`
    replaces the values of some constants before the computed ones are worked out, so
    numeric_values(src, {"MODEL_DIM": 256}) shows what N_HEAD = MODEL_DIM // HEAD_DIM becomes."""
    out: dict[str, Any] = {}
    for const in module_constants(source):
        if overrides and const.name in overrides:
            value = overrides[const.name]
        else:
            value = evaluate(const.value, out)
        if value is not NOT_LITERAL:
            out[const.name] = value
    return out
