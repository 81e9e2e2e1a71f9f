"""Pytrees: nested tuples, lists, dicts and namedtuples of tensors, as JAX has them.

A pytree is a container (tuple, list, dict, namedtuple) of pytrees, or a leaf (anything else:
a Tensor, an array, a number). None is an empty container (no leaves), as in JAX. Dicts are
flattened in sorted key order, so that two dicts with the same keys give the same leaf order.
``tree_flatten`` gives the leaves and a ``TreeDef`` that ``tree_unflatten`` fills with new leaves;
the transforms (grad, vjp, jvp, jacobian, hessian, vmap) take and return pytrees through them.
"""

from __future__ import annotations

from .errors import ArgumentError, ShapeError

__all__ = ["TreeDef", "tree_flatten", "tree_unflatten", "tree_map", "tree_leaves",
           "tree_structure", "leaf_paths"]


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


class TreeDef:
    """The structure of a pytree: a container kind, its keys, and the structures of its
    children; a leaf is ``TreeDef(None)``."""

    __slots__ = ("kind", "keys", "children")

    def __init__(self, kind, keys=(), children=()):
        self.kind = kind  # None (a leaf), "none", tuple, list, dict, or a namedtuple class
        self.keys = keys
        self.children = children

    @property
    def num_leaves(self) -> int:
        if self.kind is None:
            return 1
        return sum(c.num_leaves for c in self.children)

    def __eq__(self, other) -> bool:
        return (isinstance(other, TreeDef) and self.kind is other.kind
                and self.keys == other.keys and self.children == other.children)

    def __hash__(self) -> int:
        return hash((id(self.kind), self.keys, self.children))

    def __repr__(self) -> str:
        if self.kind is None:
            return "*"
        if self.kind == "none":
            return "None"
        if self.kind is dict:
            inner = ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.keys, self.children))
            return "{" + inner + "}"
        inner = ", ".join(repr(c) for c in self.children)
        name = getattr(self.kind, "__name__", str(self.kind))
        return f"{name}({inner})"


_LEAF = TreeDef(None)


def tree_flatten(tree) -> tuple[list, TreeDef]:
    """(leaves, treedef): the leaves in order and the structure holding them."""
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _flatten(x, leaves) -> TreeDef:
    if x is None:
        return TreeDef("none")
    if isinstance(x, dict):
        try:
            keys = tuple(sorted(x))
        except TypeError as exc:
            raise ArgumentError(f"tree_flatten: dict keys must be sortable, got "
                                f"{list(x)!r}") from exc
        return TreeDef(dict, keys, tuple(_flatten(x[k], leaves) for k in keys))
    if _is_namedtuple(x):
        return TreeDef(type(x), (), tuple(_flatten(v, leaves) for v in x))
    if isinstance(x, (tuple, list)):
        return TreeDef(type(x) if type(x) in (tuple, list) else tuple, (),
                       tuple(_flatten(v, leaves) for v in x))
    leaves.append(x)
    return _LEAF


def tree_unflatten(treedef: TreeDef, leaves):
    """The pytree of structure ``treedef`` holding ``leaves`` (in flatten order)."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ShapeError(f"tree_unflatten: expected {treedef.num_leaves} leaves for {treedef!r}, "
                         f"got {len(leaves)}")
    it = iter(leaves)
    return _build(treedef, it)


def _build(td: TreeDef, it):
    if td.kind is None:
        return next(it)
    if td.kind == "none":
        return None
    kids = [_build(c, it) for c in td.children]
    if td.kind is dict:
        return dict(zip(td.keys, kids))
    if td.kind in (tuple, list):
        return td.kind(kids)
    return td.kind(*kids)  # a namedtuple


def leaf_paths(tree, root: str = "") -> list:
    """Each leaf's path as Python would index it (``root[0]['w']``), in flatten order: for
    error messages that name an argument inside a pytree."""
    out: list = []
    _paths(tree, root, out)
    return out


def _paths(x, path, out):
    if x is None:
        return
    if isinstance(x, dict):
        for k in sorted(x):
            _paths(x[k], f"{path}[{k!r}]", out)
    elif isinstance(x, (tuple, list)):
        names = getattr(type(x), "_fields", None) if _is_namedtuple(x) else None
        for i, v in enumerate(x):
            _paths(v, f"{path}.{names[i]}" if names else f"{path}[{i}]", out)
    else:
        out.append(path)


def tree_leaves(tree) -> list:
    """The tree's leaves in flattening order (``tree_flatten(tree)[0]``)."""
    return tree_flatten(tree)[0]


def tree_structure(tree) -> TreeDef:
    """The tree's structure without its leaves (``tree_flatten(tree)[1]``)."""
    return tree_flatten(tree)[1]


def tree_map(fn, tree, *rest):
    """``fn`` applied to each leaf (and the matching leaves of ``rest``, which must have the
    same structure), in a pytree of the same structure."""
    leaves, td = tree_flatten(tree)
    others = []
    for i, r in enumerate(rest):
        lv, rd = tree_flatten(r)
        if rd != td:
            raise ShapeError(f"tree_map: argument {i + 2} expected the structure {td!r}, got "
                             f"{rd!r}")
        others.append(lv)
    return tree_unflatten(td, [fn(*xs) for xs in zip(leaves, *others)])


def broadcast_prefix(prefix, tree, where: str, what: str, root: str = "") -> list:
    """The leaves of ``prefix`` (a pytree prefix of ``tree``, e.g. vmap's in_axes) repeated
    over the leaves of ``tree`` below each of its leaves: one entry per leaf of ``tree``.
    ``root`` names ``tree`` in errors (``args``: a mismatch names ``args[1]['w']``)."""
    out: list = []
    _broadcast(prefix, tree, out, where, what, root)
    return out


def _broadcast(p, t, out, where, what, path):
    if p is None or not isinstance(p, (tuple, list, dict)):  # a leaf of the prefix
        out.extend([p] * tree_structure(t).num_leaves)
        return
    of = f" for {path}" if path else ""
    if isinstance(p, dict):
        if not isinstance(t, dict) or set(p) != set(t):
            got = f"keys {sorted(t)!r}" if isinstance(t, dict) else type(t).__name__
            raise ShapeError(f"{where}: argument '{what}' expected a dict with the keys of the "
                             f"argument it describes{of} ({got}), got keys {sorted(p)!r}")
        for k in sorted(p):
            _broadcast(p[k], t[k], out, where, what, f"{path}[{k!r}]" if path else "")
        return
    if not isinstance(t, (tuple, list)) or len(p) != len(t):
        raise ShapeError(f"{where}: argument '{what}' expected a {type(p).__name__} of "
                         f"{len(p)} entries to match the argument it describes{of}, got "
                         f"{type(t).__name__} with {len(t) if hasattr(t, '__len__') else 1}")
    for i, (pi, ti) in enumerate(zip(p, t)):
        _broadcast(pi, ti, out, where, what, f"{path}[{i}]" if path else "")
