"""The contract check: a static lint that a genome keeps to the harness API of program.md.

`check_source(source)` parses the file and returns a frozen `CheckReport` whose `problems` is a
tuple of `Problem(line, code, message)`, one per finding, in line order; `report.ok` is True when
there are none. It never raises. Run it from the shell with

    python -m genome check FILE...        # prints FILE:LINE: reason [code]; exit 1 if any fail

The rules (codes), each aimed at one way of touching the measurement:

    syntax           the file parses
    harness-import   `from evolve import harness` is there, written exactly like that
    harness-submit   training ends through `harness.submit(...)`
    harness-private  no `harness._name`: internals such as the socket and the clock
    harness-unknown  no harness name outside the documented API (DEVICE, SEQ_LEN, ...)
    harness-assign   no assignment to `harness.X`, setattr/delattr on it, or rebinding `harness`
    evolve-module    no evolve module other than the harness (scorer, supervisor, channel, ...)
    data-path        no data file names or cache paths (val.bin, train.bin, AUTOEVOLVE_HOME, ...)
    result-channel   no val_bpb lines, no raw file-descriptor I/O that could forge the channel
    builtins         no `builtins` / `__builtins__`
    sys-modules      no `sys.modules`
    monkeypatch      no assignment to attributes of time, os, sys or datetime (the clock)
    secrets          no reads of secret environment variables or of the whole environment
    ctypes           no ctypes / cffi
    gc-objects       no gc.get_objects / get_referrers / get_referents
    frames           no stack frames (inspect.currentframe, sys._getframe, f_back, ...)
    dynamic-code     no exec / eval / compile / __import__ / importlib: code the lint cannot see

Names are resolved through the file's imports, so `import time as t; t.time = f` and
`from evolve import harness as h` are caught. Docstrings are not scanned for strings.

What it does not do: run the genome, or prove anything. A determined genome can get past a static
lint (getattr with a computed name is flagged, but not every indirection is); the runtime sandbox
and the supervisor's clock are the real defence. The rules are written for few false positives on
ordinary training scripts: setting `os.environ["PYTORCH_CUDA_ALLOC_CONF"]`, `gc.collect()`,
`torch.backends.* = ...` and `torch.compile` are all fine.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The documented harness API (program.md, "The harness API"); anything else is undocumented.
HARNESS_API = frozenset({"DEVICE", "SEQ_LEN", "VOCAB_SIZE", "BOS_ID", "BUDGET_S",
                         "train_batches", "progress", "log", "submit"})
HARNESS = "evolve.harness"
CLOCK_MODULES = ("time", "os", "sys", "datetime")        # rebinding these fools timers
GC_FUNCS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents"}
FRAME_FUNCS = {"sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile",
               "inspect.currentframe", "inspect.stack", "inspect.trace",
               "inspect.getouterframes", "inspect.getinnerframes", "threading.settrace"}
FRAME_ATTRS = {"f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame",
               "cr_frame", "ag_frame"}
FD_FUNCS = {"os.fdopen", "os.write", "os.dup", "os.dup2", "socket.fromfd"}
DYNAMIC_FUNCS = {"exec", "eval", "compile", "__import__"}
SECRET_KEY = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)
# Data layout of evolve/data/prepare.py: $AUTOEVOLVE_HOME/data/<set>/{train,val}.bin, token_bytes.npy.
DATA_STRINGS = [
    (re.compile(r"\b(val|train)\.bin\b"), "names a data file ({m}); batches come only from "
                                          "harness.train_batches"),
    (re.compile(r"token_bytes\.npy"), "names the scorer's byte table ({m})"),
    (re.compile(r"AUTOEVOLVE_\w+"), "names an autoevolve environment variable ({m})"),
    (re.compile(r"autoevolve[\\/]", re.I), "names an autoevolve cache path ({m})"),
]
TRUSTED_STRINGS = [
    (re.compile(r"^evolve\.(?!harness$)\w+"), "evolve-module",
     "names the trusted module {m}; only the harness may be used"),
    (re.compile(r"evolve[\\/]\w+\.py"), "evolve-module", "names a trusted file ({m})"),
    (re.compile(r"\bval_bpb\b"), "result-channel",
     "writes a val_bpb line; only the trusted scorer reports val_bpb"),
]


@dataclass(frozen=True, order=True)
class Problem:
    line: int
    code: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self, filename: str) -> list[str]:
        """One `FILE:LINE: reason [code]` line per problem."""
        return [f"{filename}:{p.line}: {p.message} [{p.code}]" for p in self.problems]

    def first(self) -> str:
        """The first problem as `line N: reason`, for one-line summaries ('' when ok)."""
        return f"line {self.problems[0].line}: {self.problems[0].message}" if self.problems else ""


def parse(source: str) -> tuple[ast.Module | None, Problem | None]:
    """(tree, None) when `source` parses, else (None, the syntax problem with its line)."""
    try:
        return ast.parse(source), None
    except SyntaxError as e:
        return None, Problem(e.lineno or 1, "syntax", f"does not parse: {e.msg}")
    except (ValueError, RecursionError, MemoryError) as e:   # null bytes, absurd nesting
        return None, Problem(1, "syntax", f"does not parse: {e}")


class _Checker:
    """Visits every node once (ast.walk: parents before children) with visit_<Type>."""

    def __init__(self, tree: ast.Module) -> None:
        self.problems: set[Problem] = set()
        self.bindings: dict[str, str] = {}      # local name -> dotted module path it came from
        self.docstrings: set[int] = set()       # ids of docstring constants (never scanned)
        self.environ_ok: set[int] = set()       # ids of os.environ nodes used in an allowed form
        self.imported_harness = False
        self.submits = False
        self.bind_imports(tree.body)
        self.bind_aliases(tree)
        # Names that are the base of an attribute access (harness.X): the documented use.
        self.attribute_bases = {id(n.value) for n in ast.walk(tree)
                                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}

    def bind_aliases(self, tree: ast.Module) -> None:
        """Follow plain aliases of imported names (`h = harness`, `mk = socket.socket`): an
        adversary reached harness internals and the socket constructor through them, unseen by
        a check that resolved imports only. Chains resolve in a few passes."""
        for _ in range(3):
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) or node.value is None:
                    continue
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if not (isinstance(root, ast.Name) and root.id in self.bindings):
                    continue
                q = self.qualname(node.value)
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name) and t.id != root.id and q:
                        self.bindings[t.id] = q
                        if q == HARNESS and t.id != "harness":
                            self.add(t, "harness-assign", f"binds the harness to another name "
                                                          f"({t.id}): use harness.X as documented")

    def bind_imports(self, body: list[ast.stmt]) -> None:
        """Fill `bindings` from every import statement (statements only: imports are never
        inside expressions), so that a name used before its import still resolves."""
        for stmt in body:
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        self.bindings[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.bindings[top] = top
            elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
                for alias in stmt.names:
                    self.bindings[alias.asname or alias.name] = f"{stmt.module}.{alias.name}"
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list):
                    self.bind_imports(inner)
            parts = (getattr(stmt, "handlers", None) or []) + (getattr(stmt, "cases", None) or [])
            for part in parts:
                self.bind_imports(part.body)

    def mark_docstring(self, node: ast.AST) -> None:
        body = getattr(node, "body", None)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            self.docstrings.add(id(body[0].value))

    def run(self, tree: ast.Module) -> None:
        handlers: dict[type, Any] = {}
        for node in ast.walk(tree):
            kind = type(node)
            handler = handlers.get(kind, False)
            if handler is False:
                handler = handlers[kind] = getattr(self, "visit_" + kind.__name__, None)
            if handler is not None:
                handler(node)

    def visit_Module(self, node: ast.Module) -> None:
        self.mark_docstring(node)

    def add(self, node: ast.AST, code: str, message: str) -> None:
        self.problems.add(Problem(getattr(node, "lineno", 1), code, message))

    def qualname(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.bindings.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    # -- imports ------------------------------------------------------------------------------

    def check_module_name(self, node: ast.AST, module: str) -> None:
        top = module.split(".")[0]
        if top == "evolve" and module != HARNESS:
            self.add(node, "evolve-module", f"imports {module}; only the harness may be used")
        elif top in ("ctypes", "_ctypes", "cffi"):
            self.add(node, "ctypes", f"imports {top}: raw memory access is not allowed")
        elif top in ("builtins", "__builtin__"):
            self.add(node, "builtins", "imports builtins")
        elif top == "importlib":
            self.add(node, "dynamic-code", "imports importlib; use plain import statements")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == HARNESS or alias.name == "evolve":
                self.add(node, "harness-import", "import the harness as documented: "
                                                 "from evolve import harness")
            else:
                self.check_module_name(node, alias.name)
            if alias.asname == "harness":
                self.add(node, "harness-assign", "binds another module to the name harness")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            return          # a relative import: genome.static_check reports it
        if module == "evolve":
            for alias in node.names:
                if alias.name != "harness":
                    self.add(node, "evolve-module",
                             f"imports evolve.{alias.name}; only the harness may be used")
                elif alias.asname not in (None, "harness"):
                    self.add(node, "harness-import", "import the harness as documented, "
                                                     "without an alias: from evolve import harness")
                    self.imported_harness = True      # imported: the alias is the problem
                else:
                    self.imported_harness = True
            return
        if module == HARNESS:
            self.add(node, "harness-import", "import the harness as documented: "
                                             "from evolve import harness")
            for alias in node.names:
                self.check_harness_attr(node, alias.name)
            return
        self.check_module_name(node, module)
        for alias in node.names:
            self.check_qualified(node, f"{module}.{alias.name}")
            if (alias.asname or alias.name) == "harness":
                self.add(node, "harness-assign", "binds another object to the name harness")

    # -- names ---------------------------------------------------------------------------------

    def check_harness_attr(self, node: ast.AST, attr: str) -> None:
        if attr.startswith("_"):
            self.add(node, "harness-private", f"harness.{attr} is a harness internal")
        elif attr not in HARNESS_API:
            self.add(node, "harness-unknown",
                     f"harness.{attr} is not part of the documented API (program.md)")

    def check_qualified(self, node: ast.AST, q: str) -> None:
        parts = q.split(".")
        if q.startswith(HARNESS + "."):
            self.check_harness_attr(node, parts[2])
        elif parts[0] == "evolve" and len(parts) > 1 and parts[1] != "harness":
            self.add(node, "evolve-module", f"uses evolve.{parts[1]}; only the harness may be used")
        if parts[0] in ("builtins", "__builtins__", "__builtin__"):
            self.add(node, "builtins", f"uses {parts[0]}: builtins may not be patched")
        if q.startswith("sys.modules") or ".sys.modules" in q:      # also os.sys.modules
            self.add(node, "sys-modules", "uses sys.modules")
        if q in GC_FUNCS:
            self.add(node, "gc-objects", f"uses {q}: walking live objects reaches the harness")
        if q in FRAME_FUNCS:
            self.add(node, "frames", f"uses {q}: stack frames are not allowed")
        if q in FD_FUNCS:
            self.add(node, "result-channel", f"uses {q}: raw file descriptors could forge the "
                                             f"result channel")
        if parts[0] in ("ctypes", "_ctypes", "cffi"):
            self.add(node, "ctypes", f"uses {parts[0]}: raw memory access is not allowed")

    def visit_Name(self, node: ast.Name) -> None:
        q = self.bindings.get(node.id, node.id)
        if q == HARNESS and isinstance(node.ctx, ast.Load) and id(node) not in self.attribute_bases:
            # The module itself as a value (in a tuple, a list, a default, an argument): an
            # adversary reached its internals through every such alias the check did not follow.
            self.add(node, "harness-assign", f"uses the harness module as a value ({node.id}); "
                                             "use harness.X as documented")
        if q != node.id or node.id in ("__builtins__", "builtins"):
            self.check_qualified(node, q)
        if isinstance(node.ctx, (ast.Store, ast.Del)) and node.id == "harness":
            self.add(node, "harness-assign", "rebinds the name harness")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FRAME_ATTRS:
            self.add(node, "frames", f"uses .{node.attr}: stack frames are not allowed")
        q = self.qualname(node)
        if q and isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_store(node, q)
        elif q:
            self.check_qualified(node, q)
            if q in ("os.environ", "os.environb") and id(node) not in self.environ_ok:
                self.add(node, "secrets", "reads the whole environment (secrets included)")

    def check_store(self, node: ast.AST, q: str) -> None:
        root = q.split(".")[0]
        if q.startswith(HARNESS + "."):
            self.add(node, "harness-assign", f"assigns to {q.replace('evolve.', '', 1)}")
        elif root in CLOCK_MODULES:
            self.add(node, "monkeypatch", f"assigns to {q}: functions of {root} may not be patched")
        else:
            self.check_qualified(node, q)

    def def_names(self, node: ast.AST) -> None:
        if getattr(node, "name", None) == "harness":
            self.add(node, "harness-assign", "defines something named harness")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.def_names(node)
        self.mark_docstring(node)

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = visit_FunctionDef

    # -- environment -------------------------------------------------------------------------

    def is_environ(self, node: ast.AST) -> bool:
        return self.qualname(node) in ("os.environ", "os.environb")

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self.is_environ(node.value):
            self.environ_ok.add(id(node.value))
            if isinstance(node.ctx, ast.Load):       # setting or deleting a variable is fine
                self.check_env_key(node, node.slice)

    def check_env_key(self, node: ast.AST, key: ast.AST) -> None:
        if not (isinstance(key, ast.Constant) and isinstance(key.value, (str, bytes))):
            self.add(node, "secrets", "reads an environment variable chosen at run time")
            return
        name = key.value.decode("latin-1") if isinstance(key.value, bytes) else key.value
        if SECRET_KEY.search(name):
            self.add(node, "secrets", f"reads the secret environment variable {name}")

    # -- statements and calls ---------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        q = self.qualname(node.func)
        func = node.func
        if isinstance(func, ast.Attribute) and self.is_environ(func.value):
            if func.attr in ("get", "setdefault", "pop") and node.args:
                self.environ_ok.add(id(func.value))
                self.check_env_key(node, node.args[0])
            elif func.attr == "update":                 # writing variables is fine
                self.environ_ok.add(id(func.value))
        if q == HARNESS + ".submit":
            self.submits = True
        if isinstance(node.func, ast.Name) and node.func.id in DYNAMIC_FUNCS \
                and node.func.id not in self.bindings:
            self.add(node, "dynamic-code", f"calls {node.func.id}(): hides code from the check")
        if q in ("os.getenv", "os.getenvb"):
            if node.args:
                self.check_env_key(node, node.args[0])
        if q in ("setattr", "delattr", "getattr", "vars") and node.args:
            target = self.qualname(node.args[0])
            name = node.args[1] if len(node.args) > 1 else None
            literal = name.value if isinstance(name, ast.Constant) \
                and isinstance(name.value, str) else None
            if target == HARNESS:
                if q in ("setattr", "delattr"):
                    self.add(node, "harness-assign", f"calls {q} on the harness")
                elif q == "vars":
                    self.add(node, "harness-private", "reads the harness's namespace with vars()")
                elif literal is None:
                    self.add(node, "harness-unknown",
                             "reads a harness attribute chosen at run time")
                else:
                    self.check_harness_attr(node, literal)
            elif target and target.split(".")[0] in CLOCK_MODULES and q in ("setattr", "delattr"):
                self.add(node, "monkeypatch", f"calls {q} on {target}: it may not be patched")
        if q == "open" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, int):
            self.add(node, "result-channel", "opens a raw file descriptor")
        # socket(family, type, proto, fileno): the fourth argument given by position counts too
        # (an adversary passed it so and the keyword-only check missed it); so do socket.fromfd
        # and socket.socket.fromfd-style constructors.
        if (q == "socket.socket" and (len(node.args) >= 4 or any(k.arg in ("fileno", None) for k in node.keywords)
                                      or any(isinstance(a, ast.Starred) for a in node.args))) \
                or q in ("socket.fromfd", "socket.socket.fromfd"):
            self.add(node, "result-channel", "opens a socket on an inherited file descriptor")

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, str) or id(node) in self.docstrings:
            return
        for pattern, message in DATA_STRINGS:
            m = pattern.search(node.value)
            if m:
                self.add(node, "data-path", message.format(m=m.group(0)))
        for pattern, code, message in TRUSTED_STRINGS:
            m = pattern.search(node.value)
            if m:
                self.add(node, code, message.format(m=m.group(0)))


def check_tree(tree: ast.Module) -> CheckReport:
    """The contract problems of an already parsed module."""
    checker = _Checker(tree)
    checker.run(tree)
    if not checker.imported_harness:
        checker.problems.add(Problem(1, "harness-import",
                                     "does not import the harness: from evolve import harness"))
    if not checker.submits:
        checker.problems.add(Problem(1, "harness-submit",
                                     "never calls harness.submit(model) to end training"))
    return CheckReport(tuple(sorted(checker.problems)))


def check_source(source: str) -> CheckReport:
    """All contract problems of `source`, in line order (see the module docstring)."""
    tree, problem = parse(source)
    return CheckReport((problem,)) if tree is None else check_tree(tree)


def read_source(path: str | Path) -> tuple[str | None, str]:
    """(text, "") or (None, one-line reason) for a genome file."""
    try:
        return Path(path).read_text(encoding="utf-8"), ""
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except OSError as e:
        return None, f"cannot be read: {e.strerror or e}"


def check_file(path: str | Path) -> CheckReport:
    text, why = read_source(path)
    if text is None:
        return CheckReport((Problem(1, "syntax", why),))
    return check_source(text)
