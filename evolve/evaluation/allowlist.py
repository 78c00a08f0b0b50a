"""The op allow-list: which operations an exported model may contain before it is ever run.

An ExportedProgram is code. Its graph can name any aten op, and some aten ops open, map or
write files (`aten::from_file`), draw random numbers, read memory outside a tensor
(`as_strided`), read uninitialised memory (`empty`), or write into their inputs or the weights.
`check_program(ep)` walks every graph of the program (the top graph and every nested one:
higher-order ops such as flex_attention carry their own subgraphs as submodules) and
accepts only the explicit, named operations below; anything else is refused with its name, and
the scorer records `invalid` without running the program.

Why each group is safe: every op listed is a pure, deterministic function of its tensor
arguments that allocates its own output. None of them reads or writes outside the tensors it is
given, does I/O, or keeps state between calls. The `autoevolve` ops are the project's own
kernels (kernels/), trusted code with a PyTorch reference each. Mutating overloads (`add_`,
`.out` variants, anything whose schema writes an argument) are refused whatever their name.

What this module does not do: run anything, or decide a score. It is one wall of two; the other
is the model process (evolve.evaluation.model_host), which runs the program with no file,
network or process access even if an op here turned out not to be pure.
"""

from __future__ import annotations

import operator

import torch

# Pointwise arithmetic, comparisons and activations: elementwise functions of their inputs.
POINTWISE = """
abs add sub rsub mul div neg pow sqrt rsqrt exp exp2 log log2 log10 log1p expm1 reciprocal
sign sgn clamp clamp_min clamp_max clip minimum maximum fmin fmax where lerp addcmul addcdiv
floor ceil round trunc frac remainder fmod sin cos tan tanh sinh cosh asin acos atan atan2
asinh acosh atanh erf erfc erfinv sigmoid logit relu relu6 gelu silu mish softplus softshrink
hardtanh hardsigmoid hardswish leaky_relu elu selu celu glu square xlogy hypot
eq ne lt le gt ge isnan isinf isfinite isneginf isposinf nan_to_num masked_fill logical_and
logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_not bitwise_xor
""".split()
# Matrix products and convolutions: dense linear algebra on the given operands.
LINEAR = """
linear matmul mm bmm addmm addmv addbmm baddbmm einsum dot mv outer vdot
conv1d conv2d convolution _convolution
""".split()
# Lookups: read rows or elements of a tensor at given indices (bounds-checked by ATen);
# the functional scatter/index_put variants return a new tensor and change nothing.
INDEXING = """
embedding index_select gather index take take_along_dim scatter scatter_add scatter_reduce
index_put index_add masked_select masked_scatter one_hot searchsorted bucketize
""".split()
# Normalisations, softmax and attention: fixed formulas over the given tensors. Attention's
# dropout is refused separately (see _argument_problem): with dropout_p > 0 it is random.
NORMS_ATTENTION = """
layer_norm native_layer_norm rms_norm _fused_rms_norm group_norm native_group_norm
_native_batch_norm_legit_no_training softmax _softmax log_softmax _log_softmax logsumexp
_safe_softmax scaled_dot_product_attention _scaled_dot_product_flash_attention
_scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_efficient_attention
_scaled_dot_product_cudnn_attention linalg_vector_norm norm frobenius_norm
""".split()
# Reductions and scans over dimensions of one tensor.
REDUCTIONS = """
sum mean amax amin max min argmax argmin aminmax prod var std var_mean std_mean cumsum
cumprod cummax cummin logcumsumexp topk sort argsort all any count_nonzero median nanmean
nansum
""".split()
# Views and layout: new shapes of the same elements (bounded by the tensor's own size; the
# arbitrary-stride as_strided family is not here), copies, concatenation, padding.
SHAPES = """
view reshape _unsafe_view view_as permute transpose t unsqueeze squeeze expand expand_as
flatten unflatten contiguous clone alias detach lift_fresh_copy slice select narrow split
split_with_sizes tensor_split chunk unbind cat concat concatenate stack hstack vstack repeat
repeat_interleave tile flip roll tril triu pad constant_pad_nd reflection_pad1d
replication_pad1d diagonal movedim moveaxis unfold broadcast_to diff
""".split()
# Creation of constants from their arguments alone (no uninitialised memory: no `empty`).
CREATION = """
arange zeros ones full zeros_like ones_like full_like scalar_tensor linspace eye
tril_indices triu_indices new_zeros new_ones new_full
""".split()
# Casts, device moves and export's own shape/metadata assertions (they check, they compute nothing).
CASTS_ASSERTS = """
to _to_copy type_as _assert_tensor_metadata _assert_scalar _assert_async
sym_constrain_range sym_constrain_range_for_size sym_size sym_numel sym_stride
sym_storage_offset _local_scalar_dense
""".split()
# Dropout only with train literally False, where it is the identity (see _argument_problem).
DROPOUT = ["dropout", "feature_dropout", "alpha_dropout"]

ATEN = frozenset(POINTWISE + LINEAR + INDEXING + NORMS_ATTENTION + REDUCTIONS + SHAPES
                 + CREATION + CASTS_ASSERTS + DROPOUT)
# The project's own kernels (kernels/): forward ops that may sit in a model's forward.
PROJECT_OPS = frozenset({"autoevolve::rms_norm", "autoevolve::rotary", "autoevolve::relu2",
                         "autoevolve::swiglu"})
# Higher-order ops whose subgraphs are walked like the top graph: they only route tensors
# through those subgraphs (grad mode, autocast, flex attention). Not `cond` (a branch on a
# tensor predicate): it makes the graph's cost depend on its input, and an adversary used it to
# run a cheap path only on the batch the scorer times (3.4x its twin's recorded tokens/s on the
# CPU task, adversary round 16); no seed uses it.
HIGHER_ORDER = frozenset({"wrap_with_set_grad_enabled", "wrap_with_autocast", "flex_attention"})
# Python functions export uses on tuples and symbolic sizes.
PYTHON_OPS = frozenset({operator.getitem, operator.add, operator.sub, operator.mul,
                        operator.floordiv, operator.truediv, operator.mod, operator.neg,
                        operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
                        operator.ge, operator.and_, operator.or_, operator.not_})
# Overloads that reinterpret a tensor's bytes as another dtype: no model needs them, and an
# adversary used view.dtype to unpack trained weights packed into an innocent-looking constant.
_REINTERPRETING = {("aten::view", "dtype")}
MAX_NODES = 20_000          # a GPT of depth 32 exports to a few thousand nodes
# Float literals in node arguments are numbers export writes after the weights were sent: an
# adversary fitted a 2,048-entry output bias after the snapshot and exported it as 2,048
# literals. Honest seeds have 3 to 6 (norm epsilons, softcap, scales).
MAX_FLOAT_LITERALS = 64
# ... and not only floats: an adversary fitted ~12 k values after the snapshot, packed them 8 bits
# at a time into 1,756 int64 literals (torch.full((1,), INT)) and decoded them in the graph. So
# the information in all literal arguments is bounded: an int of magnitude m counts
# bit_length(m) + 1 bits, a float 64. Honest seeds hold 1,385 (cpu.py) and 2,388 (baseline.py)
# bits, list references included; 16,384 (2 KB) leaves a four-times deeper model room, and an adversary about a thousand
# 16-bit values, as much as the float cap already allowed in kind. References to other nodes
# inside list arguments count too (see _literals).
MAX_LITERAL_BITS = 16_384
# Arguments that make an otherwise pure op random: they must be literal "off".
_DROPOUT_TRAIN_ARG = {"dropout": 2, "feature_dropout": 2, "alpha_dropout": 2}


def _op_name(target) -> str:
    name = getattr(target, "name", None)
    try:
        return name() if callable(name) else str(target)
    except Exception:
        return str(target)


def _argument_problem(node, base: str) -> str | None:
    """Ops that are pure only with some arguments: dropout must be off, literally."""
    if base in _DROPOUT_TRAIN_ARG:
        i = _DROPOUT_TRAIN_ARG[base]
        train = node.args[i] if len(node.args) > i else node.kwargs.get("train")
        if train is not False:
            return f"aten::{base} with train={train!r} (random; export the model in eval mode)"
    if base.startswith("_scaled_dot_product") or base == "scaled_dot_product_attention":
        p = node.args[4] if len(node.args) > 4 else node.kwargs.get("dropout_p", 0.0)
        if p not in (0, 0.0):
            return f"aten::{base} with dropout_p={p!r} (random)"
    return None


def check_node(node) -> str | None:
    """None when one graph node may run; otherwise the reason, naming the op."""
    if node.op in ("placeholder", "output", "get_attr"):
        return None
    if node.op != "call_function":
        return f"graph node kind {node.op!r} ({node.target}) is not allowed"
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        schema = target._schema
        full = schema.name                                   # e.g. "aten::linear"
        if schema.is_mutable:
            return (f"op {full}.{target._overloadname} writes into its arguments (in-place ops "
                    "could keep state across eval batches)")
        if (full, target._overloadname) in _REINTERPRETING:
            return f"op {full}.{target._overloadname} reinterprets bits (it could unpack values " \
                   "smuggled into constants or literals)"
        if full in PROJECT_OPS:
            return None
        ns, _, base = full.partition("::")
        if ns != "aten" or base not in ATEN:
            return f"op {full} is not on the allow-list of pure tensor ops"
        return _argument_problem(node, base)
    if isinstance(target, torch._ops.HigherOrderOperator):
        name = _op_name(target)
        if name not in HIGHER_ORDER:
            return f"higher-order op {name} is not allowed"
        return None
    if target in PYTHON_OPS:
        return None
    return f"function {getattr(target, '__module__', '?')}.{getattr(target, '__name__', target)} " \
           "is not allowed in a scored graph"


def _literals(value, ref_bits: int = 0, in_list: bool = False) -> tuple[int, int]:
    """(float literals, bits of all literals) in a node's arguments: an int of magnitude m is
    bit_length(m) + 1 bits, a float 64, a bool 1, and a reference to another node inside a list
    `ref_bits` (which one of the graph's nodes it is: an adversary exported one torch.cat of
    22,528 references to 256 level buffers, values trained after the snapshot by choice of
    reference)."""
    if isinstance(value, bool):
        return 0, 1
    if isinstance(value, int):
        return 0, abs(value).bit_length() + 1
    if isinstance(value, float):
        return 1, 64
    if isinstance(value, torch.fx.Node):
        return 0, ref_bits if in_list else 0
    items = value if isinstance(value, (list, tuple)) else \
        value.values() if isinstance(value, dict) else ()
    floats = bits = 0
    for v in items:
        f, b = _literals(v, ref_bits, in_list or isinstance(value, (list, tuple)))
        floats, bits = floats + f, bits + b
    return floats, bits


# Ops that turn a number into digits: rounding, remainders, bit operations, float-to-integer
# casts, bucketing. Refused on values computed from the weights (see _decoding_problem).
_DECODING = frozenset("""
floor ceil round trunc frac remainder fmod bitwise_and bitwise_or bitwise_xor bitwise_not
bucketize searchsorted
""".split())
_CASTS = frozenset({"to", "_to_copy", "type_as"})


def _dtype(node):
    return getattr(node.meta.get("val"), "dtype", None)


def _position(node) -> bool:
    """A 0-d integer argument of a flex-attention score function: a batch, head or position index."""
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and val.dim() == 0 and not val.is_floating_point()


def _decoding_problem(ep) -> str | None:
    """The first op that turns a value computed from the weights into digits, or None.

    Why: the reference optimiser of the throughput timing is charged per element of the weights
    sent at submit (evolve.evaluation.model_host), so a weight packed several to an element is
    charged a fraction of its cost. Adversary round 20 kept a 33.5 M-entry table as 2-bit values,
    32 to an int64, decoded in the graph by division with rounding and remainders: 4.5-6.3x its
    twin's recorded tokens/s. Integers are now charged per bit, and the ops that would unpack a
    float holding many small integers (floor, remainder, casts to an integer dtype...) may not
    touch a value derived from a weight. Bool values are exempt (one bit each: masks). The seeds
    round or bucket only inputs and positions, and none is refused.

    What this does not stop: a decoder built from comparisons and float arithmetic, which
    honest models need (adversary round 21, tests/fixtures/adversarial/lowbit_rounding.py:
    2.83x its twin); the README's "What throughput does not see" gives the figures."""
    sig = ep.graph_signature
    sources = set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers) | \
        set(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})

    def walk(gm, tainted_placeholders) -> str | None:
        tainted: set = set()
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        for i, n in enumerate(placeholders):
            if tainted_placeholders(i, n):
                tainted.add(n)
        for node in gm.graph.nodes:
            if node.op == "get_attr":
                if isinstance(getattr(gm, str(node.target), None), torch.Tensor):
                    tainted.add(node)       # a tensor held by the graph module: a weight
                continue
            if node.op != "call_function":
                continue
            hit = [a for a in node.all_input_nodes if a in tainted]
            target = node.target
            if isinstance(target, torch._ops.HigherOrderOperator):
                subs = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op == "get_attr"
                        and isinstance(getattr(gm, str(a.target), None), torch.fx.GraphModule)]
                for sub in subs:
                    sub_gm = getattr(gm, str(sub.target))
                    after = node.args[node.args.index(sub) + 1:]
                    operands = [a for a in after if isinstance(a, torch.fx.Node)]
                    if _op_name(target).startswith("wrap_with"):
                        # placeholders are the operands after the subgraph, in order
                        flags = [o in tainted for o in operands]
                        problem = walk(sub_gm, lambda i, n, f=flags: i < len(f) and f[i])
                    else:
                        # flex attention's score function: its 0-d integer arguments are
                        # indices; the score and any other buffer may carry weights
                        problem = walk(sub_gm, lambda i, n: not _position(n))
                    if problem:
                        return problem
                if hit:
                    tainted.add(node)
                continue
            if not hit:
                continue
            tainted.add(node)
            if not isinstance(target, torch._ops.OpOverload):
                continue
            base = target._schema.name.partition("::")[2]
            moved = [a for a in hit if _dtype(a) not in (None, torch.bool)]   # bools exempt
            out = _dtype(node)
            to_integer = base in _CASTS and out is not None and out != torch.bool \
                and not out.is_floating_point and not out.is_complex \
                and any(_dtype(a).is_floating_point for a in moved)
            if moved and (base in _DECODING or to_integer
                          or base == "div" and node.kwargs.get("rounding_mode")):
                return (f"op aten::{base} is applied to a value computed from the weights (it can "
                        "unpack weights stored several to an element, which the throughput "
                        "timing would charge as one): apply it to inputs or positions only")
        return None

    return walk(ep.graph_module, lambda i, n: n.op == "placeholder" and n.name in sources)


def check_program(ep) -> str | None:
    """None when every node of every graph of `ep` is allowed; otherwise the refusals.

    Also refused: a program whose signature mutates a buffer or a user input (state that
    would carry from one eval batch to the next), and one that takes a value computed from the
    weights apart into digits (_decoding_problem)."""
    sig = ep.graph_signature
    if getattr(sig, "buffers_to_mutate", None):
        return (f"the model writes its buffer {next(iter(sig.buffers_to_mutate.values()))}: "
                "state across eval batches is not allowed")
    if getattr(sig, "user_inputs_to_mutate", None):
        return "the model writes into its input"
    problems: list[str] = []
    nodes = sum(len(gm.graph.nodes) for gm in ep.graph_module.modules()
                if isinstance(getattr(gm, "graph", None), torch.fx.Graph))
    if nodes > MAX_NODES:
        # Every literal argument of a node is a few bytes that export writes after training:
        # a bound on nodes bounds what a graph can smuggle that way.
        return f"the graph has {nodes} nodes (at most {MAX_NODES})"
    floats = bits = 0
    ref_bits = max(1, nodes).bit_length()
    for gm in ep.graph_module.modules():
        graph = getattr(gm, "graph", None)
        if not isinstance(graph, torch.fx.Graph):
            continue
        for node in graph.nodes:
            problem = check_node(node)
            if problem and problem not in problems:
                problems.append(problem)
            for arg in (*node.args, *node.kwargs.values()):
                f, b = _literals(arg, ref_bits)
                floats, bits = floats + f, bits + b
    if bits > MAX_LITERAL_BITS:
        problems.append(f"the graph's literal arguments hold {bits:,} bits (at most "
                        f"{MAX_LITERAL_BITS:,}): keep learned values in parameters or buffers")
    decoding = _decoding_problem(ep)
    if decoding:
        problems.append(decoding)
    if floats > MAX_FLOAT_LITERALS:
        problems.append(f"the graph holds {floats} float literals (at most {MAX_FLOAT_LITERALS}): "
                        "keep learned values in parameters or buffers")
    if not problems:
        return None
    # Up to three distinct refusals, so the op that matters is named even behind a harmless one.
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more
