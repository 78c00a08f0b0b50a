"""What a submitted .pt2 archive may contain before any torch code parses it.

The genome writes model.pt2, so the archive is untrusted input, and parsing it is not as passive
as it looks. torch.export.load and ExportedProgram.module() run code taken from the archive in
three places (found by an adversary, each one a forged score):

- weights, constants and custom objects stored with pickle are unpickled;
- symbolic-shape expressions (`as_expr` / `expr_str`, range constraints) go through
  sympy.sympify, which evaluates Python;
- `guards_code` strings are compiled and exec'd into a guard function.

`check_archive(path_or_file)` reads the zip directory and every JSON member with the standard
library only and refuses all three, plus compiled code (AOTInductor, shared objects) and
extension-operator targets (`#...`). `harness.submit` exports at one fixed shape, so an honest
archive has no symbolic shape, no guard and no pickle. Runs in the trusted scorer; decides
nothing else and never imports torch.
"""

from __future__ import annotations

import json
import zipfile

# Keys whose presence anywhere in the graph description means code would be evaluated.
_FORBIDDEN_KEYS = {"as_expr": "a symbolic-shape expression", "expr_str": "a symbolic-shape expression"}
MAX_JSON_BYTES = 1 << 30        # the genome's files are at most 4 GiB; a graph is a few MB


def _walk(node, where: str) -> str | None:
    """The first forbidden construct in a parsed JSON value, or None."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _FORBIDDEN_KEYS:
                    return f"{where} holds {_FORBIDDEN_KEYS[key]} (evaluated as code when loaded)"
                if key in ("range_constraints", "guards_code") and value:
                    return f"{where} holds {key} (evaluated as code when loaded)"
                if key == "target" and isinstance(value, str) and value.startswith("#"):
                    return f"{where} calls an extension operator {value[:60]!r}"
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return None


def check_archive(path) -> str | None:
    """None for an archive of plain tensors and a plain graph; otherwise why it is refused.
    `path` is a path or a binary file object."""
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename
                if "aotinductor" in name or name.endswith((".so", ".pkl")):
                    return f"archive member {name!r} is not allowed (compiled code or pickle)"
                if not name.endswith(".json"):
                    continue
                if info.file_size > MAX_JSON_BYTES:
                    return f"archive member {name!r} is too large"
                data = json.loads(z.read(name))
                if name.endswith("_config.json"):
                    config = data.get("config", {}) if isinstance(data, dict) else None
                    if not isinstance(config, dict):
                        return f"malformed {name}"
                    for key, entry in config.items():
                        if not isinstance(entry, dict):
                            return f"malformed {name}"
                        if entry.get("use_pickle"):
                            return f"{key} is stored with pickle; only plain tensors are allowed"
                        if str(entry.get("path_name", "")).startswith(("opaque_obj_", "custom_obj_")):
                            return f"{key} is a pickled object; only plain tensors are allowed"
                problem = _walk(data, name.rsplit("/", 1)[-1])
                if problem:
                    return problem
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError) as e:
        return f"not a torch.export archive ({type(e).__name__})"
    return None
