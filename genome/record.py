"""The genome record: one immutable variant of the training script, with its lineage.

A `Genome` holds the source text, an identity, the ids of its parents (none for a seed, one for a
mutation, two for a crossover), the operator that made it with a one-line description of the
change ("MATRIX_LR 0.04 -> 0.05"), its generation, and a unified diff against each parent.
`to_dict` / `from_dict` turn it into plain JSON-able data for the engine's archive.

Identity (`identity(source)`): the first 16 hex digits of sha256 over a canonical form of the
parsed module, with docstrings removed. Formatting, comments and docstrings do not change it; any
change to the code does (a constant, a name, an operator, the order of statements). The canonical
form is written out here rather than taken from `ast.dump`, whose output changed between Python
versions (3.13 hides empty fields); fields that are None or empty are skipped, so a field that a
newer Python adds with an empty default does not change old identities. Source that does not
parse gets an identity from its raw text (prefixed, so it can never equal a parsed one).

Usage:
    seed = Genome.seed(open("seeds/baseline.py").read(), "baseline")
    child = Genome.child(new_source, [seed], operator="constant", description="DEPTH 8 -> 9")

What it does not do: check the contract (genome.contract) or run anything.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

ID_HEX = 16          # 64 bits of sha256: collisions are negligible for archives of millions
_SKIP_FIELDS = {"ctx", "kind", "type_comment"}   # no effect on what the code does


_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _is_docstring(stmt: ast.AST) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


_FIELDS: dict[type, tuple[str, ...]] = {}


def _canonical(node: Any, out: list[str]) -> None:
    kind = type(node)
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(f for f in kind._fields if f not in _SKIP_FIELDS)
    out.append(kind.__name__)
    out.append("(")
    doc_owner = kind in _DOC_OWNERS
    for name in fields:
        value = getattr(node, name, None)
        if value is None:
            continue
        if isinstance(value, list):
            if doc_owner and name == "body" and value and _is_docstring(value[0]):
                value = value[1:]
            if not value:
                continue
            out.append(name)
            out.append("=[")
            for item in value:
                if isinstance(item, ast.AST):
                    _canonical(item, out)
                else:
                    out.append(f"{type(item).__name__}:{item!r}")
                out.append(",")
            out.append("],")
        elif isinstance(value, ast.AST):
            out.append(name)
            out.append("=")
            _canonical(value, out)
            out.append(",")
        else:
            # Constants: the type name keeps 1, 1.0 and True apart (they compare equal).
            out.append(f"{name}={type(value).__name__}:{value!r},")
    out.append(")")


def canonical_form(source: str) -> str | None:
    """The text that identity hashes: the module's syntax tree without docstrings. None when the
    source does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return tree_form(tree)


def tree_form(tree: ast.AST) -> str:
    """canonical_form of an already parsed module (the tree is not changed)."""
    out: list[str] = []
    _canonical(tree, out)
    return "".join(out)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:ID_HEX]


@lru_cache(maxsize=256)
def identity(source: str) -> str:
    """16 hex digits naming the code of `source` (see the module docstring)."""
    form = canonical_form(source)
    return _hash("ast-v1:" + form if form is not None else "raw-v1:" + source)


def tree_identity(tree: ast.AST) -> str:
    """identity() of the source that `tree` was parsed from."""
    return _hash("ast-v1:" + tree_form(tree))


def unified_diff(parent: "Genome", child_source: str, child_id: str) -> str:
    """A unified diff (3 lines of context) from the parent's source to the child's."""
    lines = difflib.unified_diff(
        parent.source.splitlines(keepends=True), child_source.splitlines(keepends=True),
        fromfile=f"a/{parent.id}.py", tofile=f"b/{child_id}.py")
    # A last line without newline would glue onto the next header; end every line.
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass(frozen=True)
class Genome:
    """One variant of the training script. Immutable; `id` is derived from `source`.

    parents: ids of the parents, in the order given (empty for a seed).
    diffs: unified diff from each parent's source to this source, same order as `parents`.
    generation: 0 for a seed, else one more than the oldest parent's generation.
    """

    source: str
    parents: tuple[str, ...] = ()
    operator: str = "seed"
    description: str = ""
    generation: int = 0
    diffs: tuple[str, ...] = ()
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", tuple(self.parents))
        object.__setattr__(self, "diffs", tuple(self.diffs))
        object.__setattr__(self, "id", identity(self.source))

    @classmethod
    def seed(cls, source: str, description: str = "seed") -> "Genome":
        return cls(source=source, operator="seed", description=description)

    @classmethod
    def child(cls, source: str, parents: Sequence["Genome"], operator: str,
              description: str) -> "Genome":
        """A genome made from one or two parents, with a diff against each."""
        child_id = identity(source)
        return cls(source=source,
                   parents=tuple(p.id for p in parents),
                   operator=operator,
                   description=description,
                   generation=1 + max((p.generation for p in parents), default=-1),
                   diffs=tuple(unified_diff(p, source, child_id) for p in parents))

    def to_dict(self) -> dict:
        """Plain data (str, int, list) for JSON; `from_dict` reads it back."""
        return {"id": self.id, "source": self.source, "parents": list(self.parents),
                "operator": self.operator, "description": self.description,
                "generation": self.generation, "diffs": list(self.diffs)}

    @classmethod
    def from_dict(cls, data: Any) -> "Genome":
        """Read a dict written by `to_dict`. Raises ValueError with a one-line reason when a
        field is missing, of the wrong type, or the stored id does not match the source."""
        if not isinstance(data, dict):
            raise ValueError(f"genome record must be a dict, not {type(data).__name__}")
        expect = {"source": str, "parents": list, "operator": str, "description": str,
                  "generation": int, "diffs": list}
        for key, kind in expect.items():
            if key not in data:
                raise ValueError(f"genome record has no {key!r}")
            if not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise ValueError(f"genome record field {key!r} must be {kind.__name__}")
        for key in ("parents", "diffs"):
            if not all(isinstance(x, str) for x in data[key]):
                raise ValueError(f"genome record field {key!r} must hold strings")
        if len(data["parents"]) > 2 or len(data["diffs"]) != len(data["parents"]):
            raise ValueError("genome record must have at most two parents and one diff each")
        genome = cls(source=data["source"], parents=tuple(data["parents"]),
                     operator=data["operator"], description=data["description"],
                     generation=data["generation"], diffs=tuple(data["diffs"]))
        stored = data.get("id")
        if stored is not None and stored != genome.id:
            raise ValueError(f"genome record id {stored!r} does not match its source "
                             f"({genome.id})")
        return genome
