"""Mutations: swap one categorical choice for another of the same kind.

    swap_activation(parent, rng)  # "activation relu2 -> gelu in MLP.forward"
    to_swiglu(parent, rng)        # "MLP activation relu2 -> swiglu in MLP.forward (c_fc width x2)"
    swap_norm(parent, rng)        # "norm rms_norm -> layer_norm in norm"
    swap_window(parent, rng)      # 'WINDOW_PATTERN "SSSL" -> "SSSSL"'
    flip_bool(parent, rng)        # "USE_VALUE_EMBEDS True -> False"

Each recognises its pattern exactly (libcst matchers) and is not applicable otherwise:

- activation: `P.relu(x).square()`, `P.relu(x) ** 2`, `P.relu(x).pow(2)` (relu2), `P.gelu(x)`,
  `P.gelu(x, approximate="tanh")`, `P.silu(x)`, with P the functional module as the file spells
  it (F, torch.nn.functional, nn.functional; torch.relu counts, and its swaps are spelled
  torch.nn.functional); module forms nn.ReLU() / nn.GELU() / nn.SiLU() swap among themselves.
- SwiGLU: an activation call whose input is the output of `self.A` (inline, `act(self.c_fc(x))`,
  or the statement before, `x = self.c_fc(x)` then `x = act(x)`), inside a class whose `__init__`
  has exactly one `self.A = ...Linear(in, out, ...)`. The Linear's out features double, the
  activation becomes `swiglu(...)`, and a module-level `swiglu` (SiLU of one half times the other
  half) is added before the class. Not applicable when the name swiglu is already used.
- norm: `P.rms_norm` <-> `P.layer_norm` when the call has at most input, shape and weight (and a
  literal eps); nn.RMSNorm <-> nn.LayerNorm with at most shape, eps and elementwise_affine.
- window pattern: a string of S and L in an ALL_CAPS constant whose name holds WINDOW or
  PATTERN, or a `window_pattern=` keyword: one S inserted or one letter removed, or one of the
  common patterns L, SL, SSL, SSSL, SSSSL (at most 8 letters).
- bool: a module-level ALL_CAPS constant that is True or False (DEBUG / VERBOSE are left alone).

Run: python -m genome mutate FILE --operator activation --seed 1

What it does not do: check that a swap helps, or change shapes other than the SwiGLU Linear.
"""

from __future__ import annotations

import random
import re

import libcst as cst
import libcst.matchers as m

from genome import perturb
from genome.cst_tree import INSERT_BEFORE, apply_edits, code, find_nodes, parse, template
from genome.literals import literal_value, module_constants
from genome.record import Genome
from genome.result import OpResult, finish, source_of

FUNCTIONAL = frozenset({"F", "torch.nn.functional", "nn.functional", "torch"})
ACTIVATIONS = ("relu2", "gelu", "gelu_tanh", "silu")
MODULE_ACTIVATIONS = ("ReLU", "GELU", "SiLU")
COMMON_PATTERNS = ("L", "SL", "SSL", "SSSL", "SSSSL")
MAX_PATTERN = 8


def _functional(func: cst.BaseExpression, name: str) -> str | None:
    """The prefix P when `func` is P.name with P a functional module, else None."""
    if isinstance(func, cst.Attribute) and func.attr.value == name \
            and code(func.value) in FUNCTIONAL:
        return code(func.value)
    return None


def _single_arg(call: cst.Call) -> cst.BaseExpression | None:
    if len(call.args) == 1 and call.args[0].keyword is None and not call.args[0].star:
        return call.args[0].value
    return None


def activation_site(node: cst.CSTNode) -> tuple[str, str, cst.BaseExpression] | None:
    """(kind, prefix, input) when `node` is one of the activation expressions, else None."""
    def relu_input(inner: cst.CSTNode) -> tuple[str, cst.BaseExpression] | None:
        if isinstance(inner, cst.Call):
            prefix, x = _functional(inner.func, "relu"), _single_arg(inner)
            if prefix and x is not None:
                return prefix, x
        return None

    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        method = node.func.attr.value
        squared = method == "square" and not node.args or method == "pow" and \
            len(node.args) == 1 and m.matches(node.args[0].value, m.Integer("2"))
        if squared:
            found = relu_input(node.func.value)
            if found:
                return ("relu2",) + found
        for kind in ("gelu", "silu"):
            prefix = _functional(node.func, kind)
            if prefix is None:
                continue
            x = _single_arg(node)
            if x is not None:
                return kind, prefix, x
            tanh = m.SimpleString('"tanh"') | m.SimpleString("'tanh'")
            if kind == "gelu" and len(node.args) == 2 and node.args[0].keyword is None and \
                    m.matches(node.args[1], m.Arg(keyword=m.Name("approximate"), value=tanh)):
                return "gelu_tanh", prefix, node.args[0].value
    if m.matches(node, m.BinaryOperation(operator=m.Power(), right=m.Integer("2"))):
        found = relu_input(node.left)
        if found:
            return ("relu2",) + found
    return None


def activation_node(kind: str, prefix: str, x: cst.BaseExpression) -> cst.BaseExpression:
    prefix = "torch.nn.functional" if prefix == "torch" and kind != "relu2" else prefix
    text = {"relu2": f"{prefix}.relu(X).square()", "gelu": f"{prefix}.gelu(X)",
            "gelu_tanh": f'{prefix}.gelu(X, approximate="tanh")', "silu": f"{prefix}.silu(X)"}[kind]
    return template(text, X=x)


def _module_activation(node: cst.CSTNode) -> str | None:
    if isinstance(node, cst.Call) and not node.args and isinstance(node.func, cst.Attribute) \
            and node.func.attr.value in MODULE_ACTIVATIONS \
            and code(node.func.value) in ("nn", "torch.nn"):
        return node.func.attr.value
    return None


def _pick_activation(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    return activation_site(node) is not None or _module_activation(node) is not None


def _keep_parens(old: cst.BaseExpression, new: cst.BaseExpression) -> cst.BaseExpression:
    return new.with_changes(lpar=old.lpar, rpar=old.rpar) if old.lpar else new


def _not_parsable() -> OpResult:
    return OpResult.not_applicable("the source does not parse")


def swap_activation(parent: Genome | str, rng: random.Random) -> OpResult:
    """Replace one activation by another of relu2 / gelu / gelu_tanh / silu (or nn module)."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return _not_parsable()
    sites = list(find_nodes(source, _pick_activation))
    if not sites:
        return OpResult.not_applicable("no activation (relu2, gelu, silu) recognised")
    found = rng.choice(sites)
    node = found.node
    site = activation_site(node)
    if site is not None:
        kind, prefix, x = site
        new_kind = rng.choice([k for k in ACTIVATIONS if k != kind])
        new = _keep_parens(node, activation_node(new_kind, prefix, x))
    else:
        kind = _module_activation(node)
        new_kind = rng.choice([k for k in MODULE_ACTIVATIONS if k != kind])
        new = node.with_changes(func=node.func.with_changes(attr=cst.Name(new_kind)))
    child = apply_edits(source, [(found.index, node, new)])
    return finish([source], child, f"activation {kind} -> {new_kind} in {found.where}")


# ---- SwiGLU ---------------------------------------------------------------------------------

SWIGLU = '''def swiglu(x):
    """SwiGLU: SiLU of the first half of the last dimension gates the second half."""
    gate, up = x.chunk(2, dim=-1)
    return {prefix}.silu(gate) * up
'''


def _self_call(node: cst.BaseExpression) -> str | None:
    """A when node is self.A(...)."""
    if m.matches(node, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))):
        return node.func.attr.value
    return None


def _linear_out(init: cst.FunctionDef, attr: str) -> cst.BaseExpression | None:
    """The out-features node of the only `self.attr = ...Linear(in, out, ...)` in __init__."""
    matches = []
    for stmt in init.body.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Assign) and any(
                    m.matches(t.target, m.Attribute(value=m.Name("self"), attr=m.Name(attr)))
                    for t in small.targets):
                matches.append(small.value)
    if len(matches) != 1 or not isinstance(matches[0], cst.Call) or \
            not code(matches[0].func).endswith("Linear"):
        return None
    args = matches[0].args
    keyword = [a for a in args if a.keyword is not None and a.keyword.value == "out_features"]
    if keyword:
        return keyword[0].value
    positional = [a for a in args if a.keyword is None and not a.star]
    return positional[1].value if len(positional) >= 2 else None


def _doubled(node: cst.BaseExpression) -> cst.BaseExpression:
    simple = (cst.Name, cst.Attribute, cst.Integer, cst.Call, cst.Subscript)
    if isinstance(node, simple) or node.lpar or \
            m.matches(node, m.BinaryOperation(operator=m.Multiply())):
        return template("2 * X", X=node)
    return template("2 * (X)", X=node)


def _swiglu_sites(source: str) -> list[tuple]:
    """[(top-level index, class, activation node, kind, Linear out node, functional prefix)]."""
    module = parse(source)
    sites = []
    for index, stmt in enumerate(module.body):
        if not isinstance(stmt, cst.ClassDef):
            continue
        methods = {f.name.value: f for f in stmt.body.body if isinstance(f, cst.FunctionDef)}
        init, forward = methods.get("__init__"), methods.get("forward")
        if init is None or forward is None:
            continue
        for found in find_nodes(source, _pick_activation):
            if found.index != index or activation_site(found.node) is None:
                continue
            kind, prefix, x = activation_site(found.node)
            attr = _self_call(x)
            if attr is None and isinstance(x, cst.Name):
                attr = _statement_input(forward, found.node, x.value)
            out = _linear_out(init, attr) if attr else None
            if out is not None and found.where == f"{stmt.name.value}.forward":
                sites.append((index, stmt, found.node, kind, out, prefix))
    return sites


def _statement_input(forward: cst.FunctionDef, act: cst.CSTNode, name: str) -> str | None:
    """A when forward has `name = self.A(...)` directly before `name = <act>`."""
    body = forward.body.body
    assigns_name = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(name))])])
    for before, stmt in zip(body, body[1:]):
        if m.matches(stmt, assigns_name) and stmt.body[0].value is act \
                and m.matches(before, assigns_name):
            return _self_call(before.body[0].value)
    return None


def to_swiglu(parent: Genome | str, rng: random.Random) -> OpResult:
    """Turn an MLP activation fed by a Linear into SwiGLU (see the module docstring)."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return _not_parsable()
    if re.search(r"\bswiglu\b", source):
        return OpResult.not_applicable("the name swiglu is already used")
    sites = _swiglu_sites(source)
    if not sites:
        return OpResult.not_applicable("no activation fed by a Linear of the same class found")
    index, cls, act, kind, out, prefix = rng.choice(sites)
    prefix = "torch.nn.functional" if prefix == "torch" else prefix
    x = activation_site(act)[2]
    helper = cst.parse_statement(SWIGLU.format(prefix=prefix))
    edits = [(index, INSERT_BEFORE, helper), (index, out, _doubled(out)),
             (index, act, _keep_parens(act, template("swiglu(X)", X=x)))]
    child = apply_edits(source, edits)
    return finish([source], child, f"MLP activation {kind} -> swiglu in {cls.name.value}.forward "
                                   f"(Linear out features {code(out)} doubled)")


# ---- norms ----------------------------------------------------------------------------------

_NORM_SWAP = {"rms_norm": "layer_norm", "layer_norm": "rms_norm",
              "RMSNorm": "LayerNorm", "LayerNorm": "RMSNorm"}


def _eps_ok(arg: cst.Arg) -> bool:
    return arg.keyword is not None and arg.keyword.value == "eps" and \
        isinstance(literal_value(arg.value), float)


def norm_site(node: cst.CSTNode) -> str | None:
    """'rms_norm' / 'layer_norm' / 'RMSNorm' / 'LayerNorm' when node is a swappable norm call."""
    if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
        return None
    name, prefix = node.func.attr.value, code(node.func.value)
    positional = [a for a in node.args if a.keyword is None]
    keywords = [a for a in node.args if a.keyword is not None]
    if any(a.star for a in node.args):
        return None
    if name in ("rms_norm", "layer_norm") and prefix in FUNCTIONAL:
        if 2 <= len(positional) <= 3 and all(a.keyword.value == "weight" or _eps_ok(a)
                                             for a in keywords):
            return name
    if name in ("RMSNorm", "LayerNorm") and prefix in ("nn", "torch.nn"):
        if len(positional) <= 1 and all(a.keyword.value == "elementwise_affine" or _eps_ok(a)
                                        for a in keywords):
            return name
    return None


def _pick_norm(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    return norm_site(node) is not None


def swap_norm(parent: Genome | str, rng: random.Random) -> OpResult:
    """RMSNorm <-> LayerNorm at one call site (functional or module form)."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return _not_parsable()
    sites = list(find_nodes(source, _pick_norm))
    if not sites:
        return OpResult.not_applicable("no rms_norm / layer_norm call to swap")
    found = rng.choice(sites)
    old = norm_site(found.node)
    new = _NORM_SWAP[old]
    node = found.node.with_changes(func=found.node.func.with_changes(attr=cst.Name(new)))
    child = apply_edits(source, [(found.index, found.node, node)])
    return finish([source], child, f"norm {old} -> {new} in {found.where}")


# ---- window pattern ------------------------------------------------------------------------

PATTERN = re.compile(r"^[SL]+$")


def window_variants(pattern: str) -> list[str]:
    """Patterns one edit away, plus the common ones; sorted, without `pattern` itself."""
    out = {pattern[:i] + "S" + pattern[i:] for i in range(len(pattern) + 1)}
    out |= {pattern[:i] + pattern[i + 1:] for i in range(len(pattern))}
    out |= set(COMMON_PATTERNS)
    return sorted(p for p in out if p and p != pattern and len(p) <= MAX_PATTERN)


def _pick_window_keyword(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    if not m.matches(node, m.Arg(keyword=m.Name("window_pattern"), value=m.SimpleString())):
        return False
    value = node.value.evaluated_value
    return isinstance(value, str) and bool(PATTERN.match(value))


def swap_window(parent: Genome | str, rng: random.Random) -> OpResult:
    """Change one attention window pattern string ("SSSL" -> "SSSSL", "SL", "L", ...)."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return _not_parsable()
    sites = []      # (index, string node, label)
    for const in module_constants(source):
        words = perturb.words(const.name)
        if isinstance(const.value, cst.SimpleString) and words & {"WINDOW", "PATTERN"}:
            value = const.value.evaluated_value
            if isinstance(value, str) and PATTERN.match(value):
                sites.append((const.index, const.value, const.name))
    for found in find_nodes(source, _pick_window_keyword):
        sites.append((found.index, found.node.value, f"window_pattern= in {found.where}"))
    if not sites:
        return OpResult.not_applicable("no window pattern string (S and L letters) found")
    index, node, label = rng.choice(sites)
    new_pattern = rng.choice(window_variants(node.evaluated_value))
    quote = node.quote
    new = node.with_changes(value=f"{node.prefix}{quote}{new_pattern}{quote}")
    child = apply_edits(source, [(index, node, new)])
    return finish([source], child, f"{label} {code(node)} -> {code(new)}")


# ---- booleans -------------------------------------------------------------------------------

def flip_bool(parent: Genome | str, rng: random.Random) -> OpResult:
    """Flip one module-level ALL_CAPS True/False constant."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return _not_parsable()
    sites = [c for c in module_constants(source)
             if m.matches(c.value, m.Name("True") | m.Name("False"))
             and not perturb.words(c.name) & {"DEBUG", "VERBOSE"}]
    if not sites:
        return OpResult.not_applicable("no module-level ALL_CAPS boolean")
    const = rng.choice(sites)
    new = cst.Name("False" if const.value.value == "True" else "True")
    child = apply_edits(source, [(const.index, const.value, new)])
    return finish([source], child, f"{const.name} {const.value.value} -> {new.value}")
