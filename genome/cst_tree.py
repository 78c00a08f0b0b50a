"""LibCST plumbing shared by the genome operators: a cached parse with a fast node index, and
edits that rewrite only the statements they touch.

- `parse(source)`: the libcst Module, or None when it does not parse.
- `find_nodes(source, pick)`: every node with pick(node, scope) true, as `Found(node, scope,
  index)`: scope is the names of the enclosing defs and classes, index the top-level statement.
- `ancestors(source, node)`: the nodes enclosing `node`, outermost first.
- `apply_edits(source, edits)`: the child's source after (index, old node, new node) edits.
- `code(node)`, `template(text, X=node)`, `replace_nodes(tree, edits)`.

Caching: everything derived from one source text lives in one `Parsed` object, kept in an LRU
keyed by the text, so node identities always agree between a search and the edit made from
it (libcst nodes are immutable and compared by identity here). The node index is built by a
walk over the dataclass fields of libcst nodes that skips whitespace and punctuation: ~5 ms for
a 400-line genome, where a libcst visitor pass takes ~100 ms (it rebuilds every node). Edits
run a libcst transformer over the touched top-level statements only, and the child's text is
the parent's text with those statements printed again.

What it does not do: decide what to change (the operators).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Callable

import libcst as cst

INSERT_BEFORE = "insert-before"    # as the old node of an edit: add a statement before index
INSERT_AFTER = "insert-after"      # as the old node of an edit: add a statement after index
_EMPTY = cst.Module(body=[])
# Fields that hold only whitespace, brackets and punctuation: never searched.
_SKIP_PREFIXES = ("whitespace", "lpar", "rpar", "leading_lines", "comma", "semicolon", "header",
                  "footer", "lines_after_decorator", "trailing_whitespace", "equal", "colon",
                  "dot", "operator", "newline", "first_line", "empty_lines", "indent",
                  "default_indent", "default_newline", "encoding", "has_trailing_newline",
                  "asynchronous", "lbracket", "rbracket", "lbrace", "rbrace")
_FIELDS: dict[type, tuple[str, ...]] = {}


def code(node: cst.CSTNode) -> str:
    """The source text of one node, on one line (for descriptions)."""
    return " ".join(_EMPTY.code_for_node(node).split())


def _fields(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(kind)
                      if not f.name.startswith(_SKIP_PREFIXES))
        _FIELDS[kind] = names
    return names


@dataclass(frozen=True)
class Found:
    node: cst.CSTNode
    scope: tuple[str, ...]        # names of the enclosing defs and classes, outermost first
    index: int                    # of the top-level statement that holds the node

    @property
    def where(self) -> str:
        """Like "GPT.init_weights", or "module code" at top level."""
        return ".".join(self.scope) or "module code"


class Parsed:
    """One source text, parsed once, with lazily built indexes."""

    def __init__(self, module: cst.Module) -> None:
        self.module = module
        self.finds: dict[Callable, tuple[Found, ...]] = {}

    @cached_property
    def index(self) -> tuple[tuple[Found, ...], dict[int, cst.CSTNode]]:
        """(every searchable node in pre-order, id(node) -> parent)."""
        nodes: list[Found] = []
        parents: dict[int, cst.CSTNode] = {}
        for top, stmt in enumerate(self.module.body):
            parents[id(stmt)] = self.module
            stack: list[tuple[cst.CSTNode, tuple[str, ...]]] = [(stmt, ())]
            while stack:
                node, scope = stack.pop()
                nodes.append(Found(node, scope, top))
                inner = scope + (node.name.value,) if isinstance(
                    node, (cst.FunctionDef, cst.ClassDef)) else scope
                kids: list[cst.CSTNode] = []
                for name in _fields(type(node)):
                    value = getattr(node, name)
                    if isinstance(value, cst.CSTNode):
                        kids.append(value)
                    elif isinstance(value, (list, tuple)):
                        kids.extend(v for v in value if isinstance(v, cst.CSTNode))
                for kid in kids:
                    parents[id(kid)] = node
                # The name of a def belongs to the scope around it, its body to the def.
                stack.extend((kid, scope if kid is getattr(node, "name", None) else inner)
                             for kid in reversed(kids))
        return tuple(nodes), parents

    @cached_property
    def segments(self) -> tuple[str, tuple[str, ...], str]:
        m = self.module
        return ("".join(m.code_for_node(line) for line in m.header),
                tuple(m.code_for_node(stmt) for stmt in m.body),
                "".join(m.code_for_node(line) for line in m.footer))


@lru_cache(maxsize=16)    # a parsed 400-line genome with its index: ~2 MB
def parsed(source: str) -> Parsed | None:
    try:
        return Parsed(cst.parse_module(source))
    except Exception:  # libcst's ParserSyntaxError, RecursionError on absurd nesting, ...
        return None


def parse(source: str) -> cst.Module | None:
    p = parsed(source) if isinstance(source, str) else None
    return p.module if p is not None else None


Picker = Callable[[cst.CSTNode, tuple[str, ...]], bool]


def find_nodes(source: str, pick: Picker) -> tuple[Found, ...]:
    """Every node of `source` with pick(node, scope) true, in source order (cached per pick)."""
    p = parsed(source)
    if p is None:
        return ()
    if pick not in p.finds:
        p.finds[pick] = tuple(f for f in p.index[0] if pick(f.node, f.scope))
    return p.finds[pick]


def ancestors(source: str, node: cst.CSTNode) -> list[cst.CSTNode]:
    """The nodes that enclose `node` (a node of parse(source)), outermost first."""
    p = parsed(source)
    if p is None:
        return []
    parents = p.index[1]
    chain = []
    while id(node) in parents:
        node = parents[id(node)]
        chain.append(node)
    return chain[::-1]


class _Replace(cst.CSTTransformer):
    def __init__(self, mapping: dict[int, Any]) -> None:
        super().__init__()
        self.mapping = mapping

    def on_leave(self, original_node, updated_node):  # type: ignore[override]
        return self.mapping.get(id(original_node), updated_node)


def replace_nodes(tree: cst.CSTNode, edits: list[tuple[cst.CSTNode, Any]]) -> Any:
    """`tree` with each (old node, new node) replaced in one pass. The new value may also be
    cst.RemoveFromParent() or cst.FlattenSentinel([...]) where libcst allows them."""
    return tree.visit(_Replace({id(old): new for old, new in edits}))


def apply_edits(source: str, edits: list[tuple[int, Any, Any]]) -> str:
    """The source after each (top-level index, old node, new node) edit. The new node may be
    cst.RemoveFromParent() or cst.FlattenSentinel([...]) where libcst allows them, also for a
    whole top-level statement. With old = INSERT_BEFORE the statement `new` goes before the
    top-level statement `index` (taking over its leading blank lines and comments; a def or
    class that follows gets the two blank lines of PEP 8); with INSERT_AFTER it goes right
    after it, with no blank line."""
    p = parsed(source)
    assert p is not None, "apply_edits needs source that parses"
    module = p.module
    header, parts, footer = p.segments
    out = list(parts)
    for index in sorted({i for i, _, _ in edits}):
        stmt = module.body[index]
        mine = [(old, new) for i, old, new in edits if i == index]
        before = [new for old, new in mine if isinstance(old, str) and old == INSERT_BEFORE]
        after = [new.with_changes(leading_lines=[]) for old, new in mine
                 if isinstance(old, str) and old == INSERT_AFTER]
        replaced = [(old, new) for old, new in mine if not isinstance(old, str)]
        new_stmt = replace_nodes(stmt, replaced) if replaced else stmt
        if before and isinstance(new_stmt, cst.CSTNode):
            before = [before[0].with_changes(leading_lines=new_stmt.leading_lines)] + before[1:]
            if isinstance(new_stmt, (cst.FunctionDef, cst.ClassDef)):
                new_stmt = new_stmt.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
            else:
                new_stmt = new_stmt.with_changes(leading_lines=[])
        if isinstance(new_stmt, cst.RemovalSentinel):
            nodes = []
        elif isinstance(new_stmt, cst.FlattenSentinel):
            nodes = list(new_stmt.nodes)
        else:
            nodes = [new_stmt]
        out[index] = "".join(module.code_for_node(n) for n in before + nodes + after)
    text = header + "".join(out) + footer
    if not module.has_trailing_newline and text.endswith(module.default_newline):
        text = text[: -len(module.default_newline)]
    return text


class _Substitute(cst.CSTTransformer):
    def __init__(self, subs: dict[str, cst.CSTNode]) -> None:
        super().__init__()
        self.subs = subs

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name):
        return self.subs.get(original_node.value, updated_node)


def template(text: str, **subs: cst.CSTNode) -> cst.BaseExpression:
    """An expression from `text` with the names given as keywords replaced by nodes, e.g.
    template("F.gelu(X)", X=node). Use names that cannot occur otherwise (capitals)."""
    return cst.parse_expression(text).visit(_Substitute(subs))
