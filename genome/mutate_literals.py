"""Mutations: perturb numbers that are hyperparameters in all but name, inside the code.

    perturb_keyword(parent, rng) -> OpResult   # "betas=(0.9, 0.95) -> (0.9, 0.963) in module code"
    perturb_scale(parent, rng) -> OpResult     # "init scale 0.5 -> 0.62 in GPT.init_weights"

perturb_keyword: numeric literals passed by keyword, or given as parameter defaults, under a name
that is a hyperparameter by convention: base / theta (RoPE), softcap, betas, momentum,
weight_decay / wd, std, gain, scale, init_scale, lr, eps. The name decides the scale of the move
(genome.perturb: `betas` move as 1 - beta, `weight_decay=0.0` can switch on, `base` moves by
factors of e). Found with libcst matchers, so `nn.init.normal_(w, std=0.02)`,
`AdamW(..., betas=(0.8, 0.95))` and `def __init__(self, base=10000.0)` all count.

perturb_scale: float multipliers in init code (in a function whose name contains "init" or
"reset_parameters": `w.mul_(0.5)`, `fill_(0.1)`, `0.5 * bound`) and gate scales anywhere (the
literal in `2 * torch.sigmoid(...)` or `c * torch.tanh(...)`). Zero literals are left alone (a
zero init is a design choice, not a scale). Integer multipliers in init code are not touched:
in `__init__` they are shapes (`2 * N_KV_HEAD * HEAD_DIM`).

Run: python -m genome mutate FILE --operator keyword --seed 1

What it does not do: module-level ALL_CAPS constants (genome.mutate_constants), or numbers with
no telling name (an `1e-6` in a norm, a `1.02` margin), which are left for language models.
"""

from __future__ import annotations

import random
import re

import libcst as cst
import libcst.matchers as m

from genome import perturb
from genome.cst_tree import Found, apply_edits, code, find_nodes, parse
from genome.literals import number_node, slots
from genome.record import Genome
from genome.result import OpResult, finish, source_of

HYPER_KEYWORDS = frozenset({"base", "theta", "rope_base", "softcap", "logit_softcap", "betas",
                            "momentum", "weight_decay", "wd", "std", "gain", "scale",
                            "init_scale", "lr", "eps"})
INIT_FUNCTION = re.compile(r"init|reset_parameters", re.I)
INPLACE_INIT = frozenset({"fill_", "mul_", "div_", "normal_", "uniform_", "constant_"})

_KEYWORD_ARG = m.Arg(keyword=m.Name(m.MatchIfTrue(lambda v: v in HYPER_KEYWORDS)))
_KEYWORD_PARAM = m.Param(name=m.Name(m.MatchIfTrue(lambda v: v in HYPER_KEYWORDS)),
                         default=m.DoNotCare())
_FLOAT = m.Float() | m.UnaryOperation(operator=m.Minus(), expression=m.Float())
_NUMBER = _FLOAT | m.Integer()
_GATE_CALL = m.Call(func=m.Attribute(attr=m.Name("sigmoid") | m.Name("tanh")) |
                    m.Name("sigmoid") | m.Name("tanh"))
_GATE = (m.BinaryOperation(operator=m.Multiply(), left=_NUMBER, right=_GATE_CALL) |
         m.BinaryOperation(operator=m.Multiply(), left=_GATE_CALL, right=_NUMBER))
_INIT_MUL = (m.BinaryOperation(operator=m.Multiply(), left=_FLOAT) |
             m.BinaryOperation(operator=m.Multiply(), right=_FLOAT))
_INIT_CALL = m.Call(func=m.Attribute(attr=m.Name(m.MatchIfTrue(lambda v: v in INPLACE_INIT))))


def _pick_keyword(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    if m.matches(node, _KEYWORD_ARG):
        return bool(slots(node.value))
    if m.matches(node, _KEYWORD_PARAM) and node.default is not None:
        return bool(slots(node.default))
    return False


def _in_init(scope: tuple[str, ...]) -> bool:
    return any(INIT_FUNCTION.search(name) for name in scope)


def _pick_scale(node: cst.CSTNode, scope: tuple[str, ...]) -> bool:
    if m.matches(node, _GATE):
        return True
    if not _in_init(scope):
        return False
    return m.matches(node, _INIT_MUL) or (
        m.matches(node, _INIT_CALL) and any(m.matches(a.value, _FLOAT) and a.keyword is None
                                            for a in node.args))


def _try_slots(source: str, candidates: list[tuple[Found, str, list]], rng: random.Random,
               what: str) -> OpResult:
    """Shuffle the candidates; the first slot with a proposal makes the child."""
    if not candidates:
        return OpResult.not_applicable(f"no {what} found")
    rng.shuffle(candidates)
    for found, label, numbers in candidates:
        for slot in rng.sample(numbers, len(numbers)):
            new = perturb.propose(label.upper(), slot.value, rng)
            if new is None:
                continue
            new_node = number_node(new, slot.node)
            return found, slot, new_node
    return OpResult.not_applicable(f"no {what} could be changed (all zero or frozen)")


def perturb_keyword(parent: Genome | str, rng: random.Random) -> OpResult:
    """Move one numeric keyword argument or parameter default with a hyperparameter's name."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return OpResult.not_applicable("the source does not parse")
    candidates = []
    for found in find_nodes(source, _pick_keyword):
        node = found.node
        if isinstance(node, cst.Arg):
            candidates.append((found, node.keyword.value, slots(node.value)))
        else:
            candidates.append((found, node.name.value, slots(node.default)))
    picked = _try_slots(source, candidates, rng, "numeric keyword with a hyperparameter's name")
    if isinstance(picked, OpResult):
        return picked
    found, slot, new_node = picked
    node = found.node
    value = node.value if isinstance(node, cst.Arg) else node.default
    name = node.keyword.value if isinstance(node, cst.Arg) else node.name.value
    new_value = value.deep_replace(slot.node, new_node) if value is not slot.node else new_node
    kind = "" if isinstance(node, cst.Arg) else "default "
    description = f"{kind}{name}={code(value)} -> {code(new_value)} in {found.where}"
    child = apply_edits(source, [(found.index, slot.node, new_node)])
    return finish([source], child, description)


def perturb_scale(parent: Genome | str, rng: random.Random) -> OpResult:
    """Move one float multiplier of init code, or the literal scale of a sigmoid/tanh gate."""
    source = source_of(parent)
    if source is None or parse(source) is None:
        return OpResult.not_applicable("the source does not parse")
    candidates = []
    for found in find_nodes(source, _pick_scale):
        node = found.node
        if m.matches(node, _GATE):
            literal = node.left if m.matches(node.left, _NUMBER) else node.right
            label = "gate_scale"
        elif isinstance(node, cst.BinaryOperation):
            literal = node.left if m.matches(node.left, _FLOAT) else node.right
            label = "init_scale"
        else:
            for arg in node.args:
                if arg.keyword is None and m.matches(arg.value, _FLOAT):
                    numbers = [s for s in slots(arg.value) if s.value != 0]
                    if numbers:
                        candidates.append((found, "init_scale", numbers))
            continue
        numbers = [s for s in slots(literal) if s.value != 0]
        if numbers:
            # A gate's integer scale (2 * sigmoid) moves as a float: 2 -> 2.43.
            numbers = [type(s)(s.node, float(s.value), s.base) for s in numbers]
            candidates.append((found, label, numbers))
    picked = _try_slots(source, candidates, rng, "init or gate scale literal")
    if isinstance(picked, OpResult):
        return picked
    found, slot, new_node = picked
    label = "gate scale" if m.matches(found.node, _GATE) else "init scale"
    description = f"{label} {code(slot.node)} -> {code(new_node)} in {found.where}"
    child = apply_edits(source, [(found.index, slot.node, new_node)])
    return finish([source], child, description)
