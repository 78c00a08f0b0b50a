"""Mutations: remove an optional component, only where its pattern is recognised exactly.

    drop_warmup(parent, rng)            # "LR warm-up removed from lr_multiplier"
    drop_x0_skip(parent, rng)           # "x0 skip removed in GPT.forward (x0_lambdas deleted)"
    drop_value_embeddings(parent, rng)  # "value embeddings off: has_value_embedding returns False"

drop_warmup: in a function, an `if <...warmup...> </<= ...: return ...` with no else, followed by
more statements (so the function still returns): the `if` goes. With WARMUP_RATIO = 0 the
genome computes the same and is shorter; otherwise the warm-up is gone (known to hurt on H100).

drop_x0_skip: an assignment `x = a + b` in a function where one term mentions the name x0 (or
x0_...) and the other mentions x: the x0 term goes. Every parameter that term used through
`self.P` must be used nowhere else except (1) statements that only assign or initialise it in
place (`self.P = nn.Parameter(...)`, `self.P.fill_(0.1)`, `nn.init.zeros_(self.P)`), which are
removed, and (2) elements of list or tuple literals (optimizer groups), which are removed (an
element whose list would become empty is removed from the list around it instead). Anything
else: not applicable. Optimizers then never see a parameter without a gradient, which custom
optimizers often cannot take.

drop_value_embeddings: switches value embeddings off where the genome has one switch for them:
a top-level function named like has_value_embedding / use_value_embeds whose body is one
return (it then returns False), or an ALL_CAPS constant USE_VALUE_EMBED(S) / VALUE_EMBEDS that is
True. The dead code stays; removing it is left to later edits or a language model.

Run: python -m genome mutate FILE --operator drop_warmup

What it does not do: remove anything it cannot prove unused by these rules.
"""

from __future__ import annotations

import random
import re

import libcst as cst
import libcst.matchers as m

from genome.cst_tree import ancestors, apply_edits, code, find_nodes, parse
from genome.literals import module_constants
from genome.record import Genome
from genome.result import OpResult, finish, source_of

WARMUP = re.compile(r"warmup|warm_up", re.I)
VE_FUNCTION = re.compile(r"^(has|use|uses)_value_embed", re.I)
VE_CONSTANT = re.compile(r"^(USE_)?VALUE_EMBED(S|DINGS?)?$|^USE_VE$")
X0_NAME = re.compile(r"^x0(_\w*)?$")


def _not_parsable() -> OpResult:
    return OpResult.not_applicable("the source does not parse")


# ---- warm-up --------------------------------------------------------------------------------

def _pick_def(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    return isinstance(node, cst.FunctionDef)


def _is_warmup_guard(stmt: cst.CSTNode) -> bool:
    if not isinstance(stmt, cst.If) or stmt.orelse is not None:
        return False
    test = stmt.test
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1 and
            isinstance(test.comparisons[0].operator, (cst.LessThan, cst.LessThanEqual))):
        return False
    if not WARMUP.search(code(test)):
        return False
    body = stmt.body
    return (isinstance(body, cst.IndentedBlock) and len(body.body) == 1 and
            m.matches(body.body[0], m.SimpleStatementLine(body=[m.Return()])))


def drop_warmup(parent: Genome | str, rng: random.Random) -> OpResult:
    """Remove an `if ... < WARMUP...: return ...` guard from a function (see the docstring)."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return _not_parsable()
    sites = []
    for found in find_nodes(source, _pick_def):
        body = found.node.body
        if not isinstance(body, cst.IndentedBlock):
            continue
        for i, stmt in enumerate(body.body[:-1]):      # never the last statement
            if _is_warmup_guard(stmt):
                sites.append((found, stmt))
    if not sites:
        return OpResult.not_applicable("no `if ...warmup...: return ...` guard in a function")
    found, stmt = rng.choice(sites)
    child = apply_edits(source, [(found.index, stmt, cst.RemoveFromParent())])
    name = f"{found.where}.{found.node.name.value}" if found.where != "module code" \
        else found.node.name.value
    return finish([source], child, f"LR warm-up removed from {name} "
                                   f"(if {code(stmt.test)}: {code(stmt.body.body[0].body[0])})")


# ---- x0 skip --------------------------------------------------------------------------------

def _names(node: cst.CSTNode) -> set[str]:
    return {n.value for n in m.findall(node, m.Name())}


def _pick_x0_assign(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    if not scope or not m.matches(node, m.Assign(targets=[m.AssignTarget(m.Name())],
                                                 value=m.BinaryOperation(operator=m.Add()))):
        return False
    target = node.targets[0].target.value
    left, right = _names(node.value.left), _names(node.value.right)
    x0_left, x0_right = any(map(X0_NAME.match, left)), any(map(X0_NAME.match, right))
    return x0_left != x0_right and target in (right if x0_left else left)


def _pick_attribute(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    return isinstance(node, cst.Attribute)


def _removal_for(attr: str, chain: list[cst.CSTNode]) -> tuple | None:
    """How to remove one reference, from its enclosing nodes (outermost first):
    ("element", list, element) or ("statement", line, line); None when no rule applies."""
    for depth in range(len(chain) - 1, -1, -1):
        node = chain[depth]
        if isinstance(node, cst.Element) and depth > 0 and \
                isinstance(chain[depth - 1], (cst.List, cst.Tuple)):
            if len(chain[depth - 1].elements) > 1:
                return "element", chain[depth - 1], node
            continue                 # the only element: remove the literal around it instead
        if isinstance(node, cst.SimpleStatementLine):
            if len(node.body) != 1:
                return None
            small = node.body[0]
            assigns_it = m.matches(small, m.Assign(targets=[m.AssignTarget(
                m.Attribute(attr=m.Name(attr)))]))
            return ("statement", node, node) if assigns_it or _initialises(small, attr) else None
        if isinstance(node, (cst.BaseCompoundStatement, cst.Lambda)):
            return None
    return None


def _initialises(small: cst.BaseSmallStatement, attr: str) -> bool:
    """`X.attr.method_(...)` or `something.init_fn_(X.attr, ...)`: an in-place initialisation
    (the method or function name ends with an underscore, as torch's in-place ops do)."""
    if not m.matches(small, m.Expr(value=m.Call(func=m.Attribute()))):
        return False
    call = small.value
    if not call.func.attr.value.endswith("_"):
        return False
    if m.matches(call.func.value, m.Attribute(attr=m.Name(attr))):
        return True
    return bool(call.args) and m.matches(call.args[0].value, m.Attribute(attr=m.Name(attr)))


def _without(literal: cst.List | cst.Tuple, drop: list[cst.Element]) -> cst.CSTNode:
    """`literal` without the elements in `drop`; a removed last element hands its comma (and
    the line break before the closing bracket) to the new last element."""
    kept = [e for e in literal.elements if all(e is not d for d in drop)]
    last = literal.elements[-1]
    if kept and kept[-1] is not last:
        kept[-1] = kept[-1].with_changes(comma=last.comma)
    return literal.with_changes(elements=kept)


def drop_x0_skip(parent: Genome | str, rng: random.Random) -> OpResult:
    """Remove the x0 term of a residual update and the parameters only it used."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return _not_parsable()
    sites = list(find_nodes(source, _pick_x0_assign))
    if not sites:
        return OpResult.not_applicable("no `x = ... x ... + ... x0 ...` assignment in a function")
    found = rng.choice(sites)
    assign = found.node
    left_has_x0 = any(map(X0_NAME.match, _names(assign.value.left)))
    term, keep = ((assign.value.left, assign.value.right) if left_has_x0
                  else (assign.value.right, assign.value.left))
    params = {a.attr.value for a in m.findall(term, m.Attribute(value=m.Name("self")))}
    statements: list[tuple[int, cst.CSTNode]] = []
    literals: dict[int, tuple[int, cst.CSTNode, list]] = {}
    for ref in find_nodes(source, _pick_attribute):
        if ref.node.attr.value not in params:
            continue
        chain = ancestors(source, ref.node)
        if any(node is term for node in chain):
            continue
        removal = _removal_for(ref.node.attr.value, chain)
        if removal is None:
            return OpResult.not_applicable(
                f"{ref.node.attr.value} is used outside the patterns this operator removes "
                f"({ref.where}: {code(chain[-1]) if chain else code(ref.node)})")
        kind, holder, item = removal
        if kind == "statement":
            if all(holder is not old for _, old in statements):
                statements.append((ref.index, holder))
        else:
            literals.setdefault(id(holder), (ref.index, holder, []))[2].append(item)
    edits = [(found.index, assign.value, keep)]
    edits += [(index, line, cst.RemoveFromParent()) for index, line in statements]
    edits += [(index, lit, _without(lit, items)) for index, lit, items in literals.values()]
    child = apply_edits(source, edits)
    extra = f" ({', '.join(sorted(params))} deleted)" if params else ""
    return finish([source], child, f"x0 skip removed in {found.where}: "
                                   f"{code(assign.targets[0].target)} = {code(keep)}{extra}")


# ---- value embeddings ----------------------------------------------------------------------

def drop_value_embeddings(parent: Genome | str, rng: random.Random) -> OpResult:
    """Switch value embeddings off at their one switch (see the module docstring)."""
    source = source_of(parent)
    module = parse(source) if source is not None else None
    if module is None:
        return _not_parsable()
    sites = []
    for index, stmt in enumerate(module.body):
        if isinstance(stmt, cst.FunctionDef) and VE_FUNCTION.match(stmt.name.value) and \
                isinstance(stmt.body, cst.IndentedBlock):
            body = list(stmt.body.body)
            if body and m.matches(body[0], m.SimpleStatementLine(
                    body=[m.Expr(value=m.SimpleString() | m.ConcatenatedString())])):
                body = body[1:]
            if len(body) == 1 and m.matches(body[0], m.SimpleStatementLine(body=[m.Return()])):
                ret = body[0].body[0]
                if ret.value is not None and not m.matches(ret.value, m.Name("False")):
                    sites.append((index, ret.value, cst.Name("False"),
                                  f"value embeddings off: {stmt.name.value} returns False"))
    for const in module_constants(source):
        if VE_CONSTANT.match(const.name) and m.matches(const.value, m.Name("True")):
            sites.append((const.index, const.value, cst.Name("False"),
                          f"value embeddings off: {const.name} True -> False"))
    if not sites:
        return OpResult.not_applicable("no value-embedding switch (has_value_embedding(), "
                                       "USE_VALUE_EMBEDS) found")
    index, old, new, description = rng.choice(sites)
    child = apply_edits(source, [(index, old, new)])
    return finish([source], child, description)
