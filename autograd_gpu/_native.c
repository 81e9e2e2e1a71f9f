/* autograd_gpu._native: the recorded graph's node as a C type that the cyclic garbage collector
 * does not track.
 *
 * Why: every recorded op makes one node, and nodes never take part in reference cycles (they
 * point to their parents' nodes, saved arrays and constants, never to tensors; see ops/graph.py),
 * so reference counting frees them. As a Python class with __slots__, each node was tracked by
 * the collector, and on a long graph its generational passes over the nodes cost more than the
 * recording itself (100,000 ops: about 8 us per op against 4 with the collector off). Untracked
 * nodes also let the parents tuples drop out of tracking at their first collection (a tuple of
 * untracked objects is untracked).
 *
 * Node holds the data (the same attributes and constructor as the pure-Python fallback in
 * ops/graph.py), and ops/graph.py sets the same Python methods and properties on both, so the
 * behaviour has one definition. Deep graphs deallocate without deep C recursion: between two
 * nodes there is always a parents tuple, whose dealloc goes through CPython's trashcan.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *op;
    PyObject *params;
    PyObject *parents;
    PyObject *in_meta;
    PyObject *saved;
    PyObject *smap;
    PyObject *tapes;
    PyObject *out_meta;
    PyObject *site;
    PyObject *extra;
    PyObject *fw;
    PyObject *weakreflist;
} NodeObject;

static void
set_field(PyObject **field, PyObject *value)
{
    Py_INCREF(value);
    Py_XSETREF(*field, value);
}

/* Fill a node's fields (borrowed references; NULL or old fields are replaced): the one
 * definition of a new node's state, for Node(...) and for record() below. */
static void
node_fill(NodeObject *self, PyObject *op, PyObject *params, PyObject *parents, PyObject *in_meta,
          PyObject *saved, PyObject *smap, PyObject *tapes, PyObject *out_meta)
{
    set_field(&self->op, op);
    set_field(&self->params, params);
    set_field(&self->parents, parents);
    set_field(&self->in_meta, in_meta);
    set_field(&self->saved, saved);
    set_field(&self->smap, smap);
    set_field(&self->tapes, tapes);
    set_field(&self->out_meta, out_meta);
    set_field(&self->site, Py_None);
    set_field(&self->extra, Py_None);
    set_field(&self->fw, Py_None);
}

static int
node_init(NodeObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *op, *params, *parents, *in_meta, *saved, *smap, *tapes, *out_meta;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Node() takes positional arguments only");
        return -1;
    }
    if (!PyArg_UnpackTuple(args, "Node", 8, 8, &op, &params, &parents, &in_meta, &saved,
                           &smap, &tapes, &out_meta)) {
        return -1;
    }
    node_fill(self, op, params, parents, in_meta, saved, smap, tapes, out_meta);
    return 0;
}

static void
node_dealloc(NodeObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Py_CLEAR(self->op);
    Py_CLEAR(self->params);
    Py_CLEAR(self->parents);
    Py_CLEAR(self->in_meta);
    Py_CLEAR(self->saved);
    Py_CLEAR(self->smap);
    Py_CLEAR(self->tapes);
    Py_CLEAR(self->out_meta);
    Py_CLEAR(self->site);
    Py_CLEAR(self->extra);
    Py_CLEAR(self->fw);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp); /* instances of a heap type hold a reference to it */
}

#define MEMBER(name, field) {name, T_OBJECT, offsetof(NodeObject, field), 0, NULL}

static PyMemberDef node_members[] = {
    MEMBER("op", op),
    MEMBER("params", params),
    MEMBER("parents", parents),
    MEMBER("_in_meta", in_meta),
    MEMBER("saved", saved),
    MEMBER("saved_map", smap),
    MEMBER("tapes", tapes),
    MEMBER("out_meta", out_meta),
    MEMBER("site", site),
    MEMBER("extra", extra),
    MEMBER("fw", fw),
    {"__weaklistoffset__", T_PYSSIZET, offsetof(NodeObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot node_slots[] = {
    {Py_tp_dealloc, (void *)node_dealloc},
    {Py_tp_init, (void *)node_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_members, node_members},
    {Py_tp_doc, "A recorded op's graph node; ops/graph.py adds its methods to this type."},
    {0, NULL},
};

/* A heap type (so ops/graph.py can set its Python methods and properties on it) whose
 * instances the cyclic GC does not track: no Py_TPFLAGS_HAVE_GC. A subclass defined in Python
 * would not do: CPython makes every class statement's instances GC-tracked. */
static PyType_Spec node_spec = {
    .name = "autograd_gpu.ops.graph.Node",
    .basicsize = sizeof(NodeObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = node_slots,
};

/* ---------------------------------------------------------------------------------------------
 * record(op, inputs, params, mode): registry._apply_observed's common case in C.
 *
 * It handles one case only (called by registry.apply once hooks are ruled out): tapes record,
 * no forward accumulator is active, every input is a plain Tensor or TrackedTensor on one
 * backend (or a Python float/int), some input is tracked and every tape tracking one is
 * recording now. Anything else (and a forward that raises
 * ValueError/IndexError/TypeError, which the Python path re-runs to translate) returns
 * NotImplemented *before any side effect*, and registry.apply takes the Python path, which stays
 * the reference: the same node, the same output, tested both ways. Tensor slots are read and
 * written at the offsets of their member descriptors (found once by configure()).
 */

static struct {
    PyTypeObject *node_type;   /* the Node heap type above */
    PyTypeObject *tensor_type;
    PyTypeObject *tracked_type;
    PyObject *fix_out;         /* registry._fix_out(bk, out, saved, codes) -> (out, saved) */
    PyObject *layout_error;    /* registry.layout_error(op, saved, codes) -> exception */
    PyObject *complex_error;   /* registry.complex_error(op, arrays) -> exception */
    PyObject *complex64, *complex128;  /* the complex dtypes (singletons in NumPy) */
    Py_ssize_t off_data, off_bk, off_node, off_tapes, off_fw;
    PyObject *scalar_meta;     /* ((), None) */
    PyObject *empty;           /* () */
    int ready;
} R;

/* ---------------------------------------------------------------------------------------------
 * The contract with Python: every name this file reads from a Python object, in one table,
 * grouped by the object it is read from. configure() interns them; contract() returns the table
 * so that ops/registry.py and sweep.py check each name against the Python side at import (a
 * mismatch turns the compiled record and sweep off with a warning; the Python paths remain).
 * Tensor slots are read at the offsets of their member descriptors; SweepContext fields by
 * position (the order below is the order of the fields). */

static PyObject *s_recording, *s_accumulators, *s_observers, *s_differentiable, *s_forward,
    *s_vjp, *s_saved_codes, *s_codes_for, *s_complex_ok, *s_array_type, *s_shape, *s_dtype,
    *s_astype, *s_dtype_kw, *s_drop_tape;

typedef struct {
    const char *group;
    const char *name;
    PyObject **interned;  /* NULL: read by offset or position, not by name */
} ContractEntry;

static const ContractEntry CONTRACT[] = {
    {"Tensor slots", "_data", NULL},
    {"Tensor slots", "_bk", NULL},
    {"Tensor slots", "_node", NULL},
    {"Tensor slots", "_tapes", NULL},
    {"Tensor slots", "_fw", NULL},
    {"Mode", "recording", &s_recording},
    {"Mode", "accumulators", &s_accumulators},
    {"Mode", "observers", &s_observers},
    {"Op", "differentiable", &s_differentiable},
    {"Op", "forward", &s_forward},
    {"Op", "vjp", &s_vjp},
    {"Op", "saved_codes", &s_saved_codes},
    {"Op", "codes_for", &s_codes_for},
    {"Op", "complex_ok", &s_complex_ok},
    {"backend", "array_type", &s_array_type},
    {"array", "shape", &s_shape},
    {"array", "dtype", &s_dtype},
    {"rule namespace", "astype", &s_astype},
    {"astype keyword", "dtype", &s_dtype_kw},
    {"Node methods", "drop_tape", &s_drop_tape},
    {"SweepContext", "tid", NULL},
    {"SweepContext", "release", NULL},
    {"SweepContext", "F", NULL},
    {"SweepContext", "restore", NULL},
    {"SweepContext", "wrap", NULL},
    {"SweepContext", "bk", NULL},
    {"SweepContext", "sum_to", NULL},
    {"SweepContext", "batch_nd", NULL},
    {"SweepContext", "empty", NULL},
    {"SweepContext", "ready_at", NULL},
    {"SweepContext", "on_ready", NULL},
};
#define N_CONTRACT ((Py_ssize_t)(sizeof(CONTRACT) / sizeof(CONTRACT[0])))
#define N_SWEEP_CONTEXT 11

/* contract() -> {group: (name, ...)}: the table above */
static PyObject *
contract(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < N_CONTRACT; i++) {
        PyObject *lst = PyDict_GetItemString(out, CONTRACT[i].group);  /* borrowed */
        if (lst == NULL) {
            lst = PyList_New(0);
            if (lst == NULL || PyDict_SetItemString(out, CONTRACT[i].group, lst) < 0) {
                Py_XDECREF(lst);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(lst);  /* the dict holds it */
        }
        PyObject *name = PyUnicode_FromString(CONTRACT[i].name);
        if (name == NULL || PyList_Append(lst, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(name);
    }
    return out;
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))
#define MAX_INPUTS 8

static int
slot_offset(PyTypeObject *tp, const char *name, Py_ssize_t *off)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)tp, name);
    if (d == NULL) {
        return -1;
    }
    if (!PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
        Py_DECREF(d);
        PyErr_Format(PyExc_TypeError, "configure: %s.%s is not a slot", tp->tp_name, name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    *off = m->offset;
    Py_DECREF(d);
    return 0;
}

static PyObject *
configure(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *node_type, *tensor_type, *tracked_type, *fix_out, *layout_error, *complex_error;
    PyObject *c64, *c128;
    if (!PyArg_ParseTuple(args, "O!O!O!OOO(OO):configure", &PyType_Type, &node_type,
                          &PyType_Type, &tensor_type, &PyType_Type, &tracked_type, &fix_out,
                          &layout_error, &complex_error, &c64, &c128)) {
        return NULL;
    }
    if (((PyTypeObject *)node_type)->tp_basicsize != sizeof(NodeObject) ||
        ((PyTypeObject *)tracked_type)->tp_basicsize !=
            ((PyTypeObject *)tensor_type)->tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "configure: unexpected node or tensor layout");
        return NULL;
    }
    if (slot_offset((PyTypeObject *)tensor_type, "_data", &R.off_data) < 0 ||
        slot_offset((PyTypeObject *)tensor_type, "_bk", &R.off_bk) < 0 ||
        slot_offset((PyTypeObject *)tensor_type, "_node", &R.off_node) < 0 ||
        slot_offset((PyTypeObject *)tensor_type, "_tapes", &R.off_tapes) < 0 ||
        slot_offset((PyTypeObject *)tensor_type, "_fw", &R.off_fw) < 0) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < N_CONTRACT; i++) {
        PyObject **slot = CONTRACT[i].interned;
        if (slot != NULL && *slot == NULL &&
            (*slot = PyUnicode_InternFromString(CONTRACT[i].name)) == NULL) {
            return NULL;
        }
    }
    if (R.empty == NULL && (R.empty = PyTuple_New(0)) == NULL) {
        return NULL;
    }
    if (R.scalar_meta == NULL && (R.scalar_meta = PyTuple_Pack(2, R.empty, Py_None)) == NULL) {
        return NULL;
    }
    Py_INCREF(node_type);
    Py_INCREF(tensor_type);
    Py_INCREF(tracked_type);
    Py_INCREF(fix_out);
    Py_INCREF(layout_error);
    Py_INCREF(complex_error);
    Py_INCREF(c64);
    Py_INCREF(c128);
    Py_XSETREF(R.node_type, (PyTypeObject *)node_type);
    Py_XSETREF(R.tensor_type, (PyTypeObject *)tensor_type);
    Py_XSETREF(R.tracked_type, (PyTypeObject *)tracked_type);
    Py_XSETREF(R.fix_out, fix_out);
    Py_XSETREF(R.layout_error, layout_error);
    Py_XSETREF(R.complex_error, complex_error);
    Py_XSETREF(R.complex64, c64);
    Py_XSETREF(R.complex128, c128);
    R.ready = 1;
    Py_RETURN_NONE;
}

/* mode.<name> is an empty list (or otherwise false): 1; non-empty: 0; error: -1 */
static int
empty_list_attr(PyObject *mode, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(mode, name);
    if (v == NULL) {
        return -1;
    }
    int empty = PyList_Check(v) ? PyList_GET_SIZE(v) == 0 : !PyObject_IsTrue(v);
    Py_DECREF(v);
    return empty;
}

/* every key of the set ``keys`` is in the dict ``d``: 1; not: 0; error: -1 (public API only:
 * _PySet_NextEntry left the public C API in CPython 3.13) */
static int
all_in_dict(PyObject *keys, PyObject *d)
{
    PyObject *it = PyObject_GetIter(keys);
    if (it == NULL) {
        return -1;
    }
    PyObject *key;
    int ok = 1;
    while (ok == 1 && (key = PyIter_Next(it)) != NULL) {
        ok = PyDict_Contains(d, key);
        Py_DECREF(key);
    }
    Py_DECREF(it);
    if (ok == 1 && PyErr_Occurred()) {
        return -1;
    }
    return ok;
}

/* With an exception set: 1 if op.runs_user_code is true (the exception kept), 0 if not (kept),
   -1 if reading the flag failed (that error replaces it). */
static int
runs_user_code(PyObject *op)
{
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *flag = PyObject_GetAttrString(op, "runs_user_code");
    int user = flag == NULL ? -1 : PyObject_IsTrue(flag);
    Py_XDECREF(flag);
    if (user < 0) {
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        return -1;
    }
    PyErr_Restore(et, ev, tb);
    return user;
}


static PyObject *
record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4 || !R.ready || !PyTuple_Check(args[1]) || !PyDict_Check(args[2])) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *op = args[0], *inputs = args[1], *params = args[2], *mode = args[3];
    Py_ssize_t n = PyTuple_GET_SIZE(inputs);
    if (n == 0 || n > MAX_INPUTS) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    for (Py_ssize_t i = 0; i < n; i++) {  /* decline a Variable or a list before any lookup */
        PyTypeObject *tx = Py_TYPE(PyTuple_GET_ITEM(inputs, i));
        if (tx != R.tensor_type && tx != R.tracked_type && tx != &PyFloat_Type &&
            tx != &PyLong_Type) {
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    PyObject *result = NULL, *recording = NULL, *found = NULL, *fwd = NULL, *res = NULL;
    PyObject *out = NULL, *saved = NULL, *codes = NULL, *parents = NULL, *in_meta = NULL;
    PyObject *out_meta = NULL, *shape = NULL, *dtype = NULL, *it = NULL;
    PyObject *array_type = NULL, *observers = NULL;
    NodeObject *node = NULL;
    PyObject *stack[MAX_INPUTS + 1];
    /* strong references while the forward runs (it may release the GIL, and another thread
     * may re-watch a shared input meanwhile) */
    PyObject *arrs[MAX_INPUTS], *pars[MAX_INPUTS];
    Py_ssize_t held = 0;  /* arrs[:held] and pars[:held] are owned */
    int fallback = 1;

    /* preconditions, with no side effect (registry.apply has already routed calls with hooks
     * to the hooks, so they are not checked again here) */
    int e = empty_list_attr(mode, s_accumulators);
    if (e != 1) goto done;
    PyObject *diff = PyObject_GetAttr(op, s_differentiable);
    if (diff == NULL) goto done;
    int is_diff = diff == Py_True;
    Py_DECREF(diff);
    if (!is_diff) goto done;
    recording = PyObject_GetAttr(mode, s_recording);
    if (recording == NULL || !PyDict_Check(recording)) goto done;

    PyObject *bk = NULL;
    int constant = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyTuple_GET_ITEM(inputs, i);
        PyTypeObject *tx = Py_TYPE(x);
        if (tx == R.tensor_type || tx == R.tracked_type) {
            PyObject *xb = SLOT(x, R.off_bk), *a = SLOT(x, R.off_data);
            PyObject *tp = SLOT(x, R.off_tapes);
            if (xb == NULL || a == NULL || tp == NULL || !PyFrozenSet_Check(tp)) goto done;
            if (bk == NULL) {
                bk = xb;
            } else if (xb != bk) {
                goto done;  /* mixed devices: the Python path raises the DeviceError */
            }
            if (PySet_GET_SIZE(tp) > 0) {
                PyObject *p = SLOT(x, R.off_node);
                if (p == NULL || Py_TYPE(p) != R.node_type) goto done;
                if (found == NULL) {
                    Py_INCREF(tp);
                    found = tp;
                } else if (tp != found) {
                    int same = PyObject_RichCompareBool(tp, found, Py_EQ);
                    if (same < 0) goto done;
                    if (!same) {
                        PyObject *u = PyNumber_Or(found, tp);
                        if (u == NULL) goto done;
                        Py_SETREF(found, u);
                    }
                }
                pars[i] = Py_NewRef(p);
            } else {
                pars[i] = Py_NewRef(Py_None);
                constant = 1;
            }
            arrs[i] = Py_NewRef(a);
            held = i + 1;
        } else if (tx == &PyFloat_Type || tx == &PyLong_Type) {
            arrs[i] = Py_NewRef(x);
            pars[i] = Py_NewRef(Py_None);
            constant = 1;
            held = i + 1;
        } else {
            goto done;
        }
    }
    if (found == NULL || bk == NULL) goto done;
    /* every tape tracking an input must be recording now (in this thread) */
    if (all_in_dict(found, recording) != 1) goto done;

    /* the saved-slot codes: the op's declared layout (by position, see ops/registry.py) */
    codes = PyObject_GetAttr(op, s_saved_codes);
    if (codes == NULL) goto done;
    if (codes == Py_None) {
        PyObject *nobj = PyLong_FromSsize_t(n);
        Py_SETREF(codes, nobj ? PyObject_CallMethodObjArgs(op, s_codes_for, nobj, params,
                                                           NULL) : NULL);
        Py_XDECREF(nobj);
        if (codes == NULL) {
            fallback = 0;  /* a layout error: raise it */
            goto done;
        }
    }
    if (!PyTuple_Check(codes)) goto done;

    /* the forward */
    fwd = PyObject_GetAttr(op, s_forward);
    if (fwd == NULL) goto done;
    stack[0] = bk;
    for (Py_ssize_t i = 0; i < n; i++) stack[i + 1] = arrs[i];
    res = PyObject_VectorcallDict(fwd, stack, n + 1, PyDict_GET_SIZE(params) ? params : NULL);
    if (res == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ValueError) ||
            PyErr_ExceptionMatches(PyExc_IndexError) ||
            PyErr_ExceptionMatches(PyExc_TypeError)) {
            /* NumPy's error from a library op: the Python path re-runs it and translates the
               error. A user primitive's forward must not run twice (its side effects would
               happen twice): its error is raised as it is and apply adds the note. */
            int user = runs_user_code(op);
            if (user != 0) fallback = 0;  /* 1: raise it; -1: the new error is raised */
            goto done;
        }
        fallback = 0;
        goto done;
    }
    fallback = 0;  /* from here on: finish or raise */
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2 ||
        !PyTuple_Check(PyTuple_GET_ITEM(res, 1))) {
        PyErr_SetString(PyExc_TypeError,
                        "op forward must return (output, tuple of saved values)");
        goto done;
    }
    array_type = PyObject_GetAttr(bk, s_array_type);
    if (array_type == NULL) goto done;
    if ((PyObject *)Py_TYPE(PyTuple_GET_ITEM(res, 0)) != array_type) {
        /* numpy ufuncs return scalars for 0-d inputs: registry._fix_out makes it an array */
        PyObject *fixed = PyObject_CallFunctionObjArgs(R.fix_out, bk, PyTuple_GET_ITEM(res, 0),
                                                       PyTuple_GET_ITEM(res, 1), codes, NULL);
        if (fixed == NULL) goto done;
        Py_SETREF(res, fixed);
    }
    out = PyTuple_GET_ITEM(res, 0);
    saved = PyTuple_GET_ITEM(res, 1);
    if (!PyTuple_Check(saved) || PyTuple_GET_SIZE(saved) != PyTuple_GET_SIZE(codes)) {
        PyObject *exc = PyObject_CallFunctionObjArgs(R.layout_error, op, saved, codes, NULL);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        goto done;
    }
    parents = PyTuple_New(n);
    if (parents == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(pars[i]);
        PyTuple_SET_ITEM(parents, i, pars[i]);
    }
    if (constant) {  /* metas stored only when a constant is among the inputs */
        in_meta = PyTuple_New(n);
        if (in_meta == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *m;
            if (pars[i] != Py_None) {
                m = ((NodeObject *)pars[i])->out_meta;
                Py_INCREF(m);
            } else if (arrs[i] == PyTuple_GET_ITEM(inputs, i)) {  /* a Python number */
                m = R.scalar_meta;
                Py_INCREF(m);
            } else {
                PyObject *sh = PyObject_GetAttr(arrs[i], s_shape);
                PyObject *dt = sh ? PyObject_GetAttr(arrs[i], s_dtype) : NULL;
                m = dt ? PyTuple_Pack(2, sh, dt) : NULL;
                Py_XDECREF(sh);
                Py_XDECREF(dt);
                if (m == NULL) goto done;
            }
            PyTuple_SET_ITEM(in_meta, i, m);
        }
    }
    shape = PyObject_GetAttr(out, s_shape);
    dtype = shape ? PyObject_GetAttr(out, s_dtype) : NULL;
    if (dtype == NULL) goto done;
    if (dtype == R.complex64 || dtype == R.complex128) {  /* refused unless the op has rules */
        PyObject *ok = PyObject_GetAttr(op, s_complex_ok);
        if (ok == NULL) goto done;
        int is_ok = PyObject_IsTrue(ok);
        Py_DECREF(ok);
        if (is_ok < 0) goto done;
        if (!is_ok) {
            PyObject *alist = PyTuple_New(n);
            if (alist == NULL) goto done;
            for (Py_ssize_t i = 0; i < n; i++) {
                Py_INCREF(arrs[i]);
                PyTuple_SET_ITEM(alist, i, arrs[i]);
            }
            PyObject *exc = PyObject_CallFunctionObjArgs(R.complex_error, op, alist, NULL);
            Py_DECREF(alist);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            goto done;
        }
    }
    {   /* share a parent's out_meta when shape and dtype are the same */
        PyObject *p = pars[0] != Py_None ? pars[0] : pars[n - 1];
        if (p != Py_None) {
            PyObject *m = ((NodeObject *)p)->out_meta;
            if (m && PyTuple_Check(m) && PyTuple_GET_SIZE(m) == 2 &&
                PyTuple_GET_ITEM(m, 1) == dtype) {
                int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(m, 0), shape, Py_EQ);
                if (eq < 0) goto done;
                if (eq) {
                    Py_INCREF(m);
                    out_meta = m;
                }
            }
        }
        if (out_meta == NULL && (out_meta = PyTuple_Pack(2, shape, dtype)) == NULL) goto done;
    }

    node = (NodeObject *)R.node_type->tp_alloc(R.node_type, 0);
    if (node == NULL) goto done;
    node_fill(node, op, params, parents, in_meta ? in_meta : Py_None, saved, codes, found,
              out_meta);

    /* append to each recording tape's node list; tell the tape's recording add-ons */
    observers = PyObject_GetAttr(mode, s_observers);
    if (observers == NULL || !PyDict_Check(observers)) {
        if (observers != NULL) {
            PyErr_SetString(PyExc_TypeError, "record: mode.observers is not a dict");
        }
        goto done;
    }
    it = PyObject_GetIter(found);
    if (it == NULL) goto done;
    for (PyObject *key; (key = PyIter_Next(it)) != NULL;) {
        PyObject *nodes = PyDict_GetItemWithError(recording, key);
        PyObject *obs = NULL;
        if (nodes != NULL && PyDict_GET_SIZE(observers)) {
            obs = PyDict_GetItemWithError(observers, key);
        }
        Py_DECREF(key);
        if (nodes == NULL || !PyList_Check(nodes)) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_RuntimeError, "record: a tape's node list vanished");
            }
            goto done;
        }
        if (PyErr_Occurred()) goto done;
        if (PyList_Append(nodes, (PyObject *)node) < 0) goto done;
        if (obs != NULL) {
            /* a checkpointing tape's add-on: it sees the node, the input arrays and the out */
            Py_INCREF(obs);  /* it runs Python code */
            PyObject *r = NULL;
            PyObject *alist = PyList_New(n);
            if (alist != NULL) {
                for (Py_ssize_t i = 0; i < n; i++) {
                    Py_INCREF(arrs[i]);
                    PyList_SET_ITEM(alist, i, arrs[i]);
                }
                r = PyObject_CallFunctionObjArgs(obs, (PyObject *)node, alist, out, NULL);
                Py_DECREF(alist);
            }
            Py_DECREF(obs);
            if (r == NULL) goto done;
            Py_DECREF(r);
        }
    }
    if (PyErr_Occurred()) goto done;

    result = R.tracked_type->tp_alloc(R.tracked_type, 0);
    if (result == NULL) goto done;
    SLOT(result, R.off_data) = Py_NewRef(out);
    SLOT(result, R.off_bk) = Py_NewRef(bk);
    SLOT(result, R.off_node) = Py_NewRef((PyObject *)node);
    SLOT(result, R.off_tapes) = Py_NewRef(found);
    SLOT(result, R.off_fw) = Py_NewRef(Py_None);

done:
    if (result == NULL && fallback) {
        PyErr_Clear();
        result = Py_NewRef(Py_NotImplemented);
    }
    Py_XDECREF(recording);
    Py_XDECREF(found);
    Py_XDECREF(fwd);
    Py_XDECREF(res);
    Py_XDECREF(codes);
    Py_XDECREF(it);
    Py_XDECREF(observers);
    Py_XDECREF(parents);
    Py_XDECREF(in_meta);
    Py_XDECREF(out_meta);
    Py_XDECREF(shape);
    Py_XDECREF(dtype);
    Py_XDECREF(array_type);
    Py_XDECREF((PyObject *)node);
    for (Py_ssize_t i = 0; i < held; i++) {
        Py_DECREF(arrs[i]);
        Py_DECREF(pars[i]);
    }
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * sweep(nodes, grads, want, found, ctx): sweep.py's run_sweep loop in C, for a sweep without
 * interceptors. ``ctx`` is a sweep.SweepContext (a tuple; its fields are read by position, in
 * the order of the CONTRACT table).
 *
 * Same steps, in the same order, as the Python loop in sweep.py (the reference, used with the
 * pure-Python node, with AUTOGRAD_GPU_PURE_PYTHON=1 and whenever an interceptor watches the
 * sweep): walk the recorded nodes backwards; take each node's cotangent out of ``grads``; note
 * it in ``found`` if the node is wanted; restore released saved values (``restore(node)``: the
 * checkpointing replay), wrap them as tensors for a differentiable sweep (``wrap(node, bk)``),
 * run the op's vjp rule; release the node's saved values (non-persistent tapes); then for each
 * parent that some later step can use, unbroadcast (``sum_to``) and cast the input cotangent to
 * the parent's meta and add it into ``grads``; then report the wanted leaves whose cotangent is
 * now final (``ready_at``/``on_ready``). Only the Python-level bookkeeping moves to C: the rules,
 * restores and sums are the same Python calls. Errors propagate with the sweep stopped where it
 * failed, as in Python.
 */


/* the input cotangent ``gi`` for parent ``p`` (a new reference), reduced to p's shape and cast
 * to its dtype; NULL on error */
static PyObject *
fit_to_parent(PyObject *gi, NodeObject *p, PyObject *F, PyObject *sum_to, Py_ssize_t batch_nd,
              PyObject *batch_obj)
{
    PyObject *meta = p->out_meta;
    if (!PyTuple_Check(meta) || PyTuple_GET_SIZE(meta) != 2) {
        PyErr_SetString(PyExc_TypeError, "sweep: a node's out_meta is not (shape, dtype)");
        return NULL;
    }
    PyObject *shape = PyTuple_GET_ITEM(meta, 0), *dtype = PyTuple_GET_ITEM(meta, 1);
    Py_INCREF(gi);
    PyObject *gshape = PyObject_GetAttr(gi, s_shape);
    if (gshape == NULL) {
        goto fail;
    }
    if (batch_nd) {
        PyObject *tail = PySequence_GetSlice(gshape, batch_nd, PY_SSIZE_T_MAX);
        Py_SETREF(gshape, tail);
        if (gshape == NULL) {
            goto fail;
        }
    }
    int same = gshape == shape ? 1 : PyObject_RichCompareBool(gshape, shape, Py_EQ);
    Py_DECREF(gshape);
    if (same < 0) {
        goto fail;
    }
    if (!same) {
        PyObject *r = PyObject_CallFunctionObjArgs(sum_to, F, gi, shape, batch_obj, NULL);
        Py_SETREF(gi, r);
        if (gi == NULL) {
            return NULL;
        }
    }
    PyObject *gd = PyObject_GetAttr(gi, s_dtype);
    if (gd == NULL) {
        goto fail;
    }
    same = gd == dtype ? 1 : PyObject_RichCompareBool(gd, dtype, Py_EQ);
    Py_DECREF(gd);
    if (same < 0) {
        goto fail;
    }
    if (!same) {
        PyObject *astype = PyObject_GetAttr(F, s_astype);
        if (astype == NULL) {
            goto fail;
        }
        PyObject *a = PyTuple_Pack(1, gi);
        PyObject *kw = a ? PyDict_New() : NULL;
        PyObject *r = NULL;
        if (kw != NULL && PyDict_SetItem(kw, s_dtype_kw, dtype) == 0) {
            r = PyObject_Call(astype, a, kw);
        }
        Py_DECREF(astype);
        Py_XDECREF(a);
        Py_XDECREF(kw);
        Py_SETREF(gi, r);
    }
    return gi;
fail:
    Py_DECREF(gi);
    return NULL;
}

/* the wanted leaves ``ready_at[node]`` have their final cotangent: on_ready(leaf, g or None) */
static int
report_ready(PyObject *ready_at, PyObject *node, PyObject *grads, PyObject *on_ready)
{
    PyObject *leaves = PyDict_GetItemWithError(ready_at, node);
    if (leaves == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(leaves);
    PyObject *seq = PySequence_Fast(leaves, "sweep: ready_at values must be sequences");
    Py_DECREF(leaves);
    if (seq == NULL) {
        return -1;
    }
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        PyObject *leaf = PySequence_Fast_GET_ITEM(seq, k);
        PyObject *g = PyDict_GetItemWithError(grads, leaf);
        if (g == NULL && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        PyObject *r = PyObject_CallFunctionObjArgs(on_ready, leaf, g ? g : Py_None, NULL);
        if (r == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        Py_DECREF(r);
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *
sweep(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyTuple_Check(args[4]) || PyTuple_GET_SIZE(args[4]) != N_SWEEP_CONTEXT) {
        PyErr_SetString(PyExc_TypeError,
                        "sweep(nodes, grads, want, found, ctx): ctx must be a SweepContext");
        return NULL;
    }
    PyObject *nodes = args[0], *grads = args[1], *want = args[2], *found = args[3];
    PyObject *ctx = args[4];
    PyObject *tid = PyTuple_GET_ITEM(ctx, 0), *F = PyTuple_GET_ITEM(ctx, 2),
             *restore = PyTuple_GET_ITEM(ctx, 3), *wrap = PyTuple_GET_ITEM(ctx, 4),
             *bk = PyTuple_GET_ITEM(ctx, 5), *sum_to = PyTuple_GET_ITEM(ctx, 6),
             *batch_obj = PyTuple_GET_ITEM(ctx, 7), *empty = PyTuple_GET_ITEM(ctx, 8),
             *ready_at = PyTuple_GET_ITEM(ctx, 9), *on_ready = PyTuple_GET_ITEM(ctx, 10);
    int release = PyObject_IsTrue(PyTuple_GET_ITEM(ctx, 1));
    Py_ssize_t batch_nd = PyLong_AsSsize_t(batch_obj);
    if (release < 0 || (batch_nd == -1 && PyErr_Occurred())) {
        return NULL;
    }
    if (!R.ready || !PyList_Check(nodes) || !PyDict_Check(grads) || !PyDict_Check(found) ||
        !PyAnySet_Check(want) || (ready_at != Py_None && !PyDict_Check(ready_at))) {
        PyErr_SetString(PyExc_TypeError, "sweep: not configured, or bad argument types");
        return NULL;
    }
    for (Py_ssize_t i = PyList_GET_SIZE(nodes) - 1; i >= 0; i--) {
        if (i >= PyList_GET_SIZE(nodes)) {  /* the list shrank under us: stop, as reversed() */
            break;
        }
        PyObject *obj = PyList_GET_ITEM(nodes, i);
        if (Py_TYPE(obj) != R.node_type) {
            PyErr_SetString(PyExc_TypeError, "sweep: the tape holds a node of another type");
            return NULL;
        }
        NodeObject *node = (NodeObject *)obj;
        Py_INCREF(node);
        PyObject *g = PyDict_GetItemWithError(grads, obj);
        if (g == NULL) {  /* no cotangent reaches it: its inputs get nothing from it either */
            if (!PyErr_Occurred() && ready_at != Py_None &&
                report_ready(ready_at, obj, grads, on_ready) < 0) {
                Py_DECREF(node);
                return NULL;
            }
            Py_DECREF(node);
            if (PyErr_Occurred()) {
                return NULL;
            }
            continue;
        }
        Py_INCREF(g);
        PyObject *saved = NULL, *vjp = NULL, *gis = NULL, *seq = NULL;
        if (PyDict_DelItem(grads, obj) < 0) {
            goto fail;
        }
        int w = PySet_Contains(want, obj);
        if (w < 0 || (w && PyDict_SetItem(found, obj, g) < 0)) {
            goto fail;
        }
        saved = node->saved;
        Py_INCREF(saved);
        if (saved == Py_None) {
            Py_SETREF(saved, PyObject_CallOneArg(restore, obj));
            if (saved == NULL) {
                goto fail;
            }
        }
        if (wrap != Py_None) {
            Py_SETREF(saved, PyObject_CallFunctionObjArgs(wrap, obj, bk, NULL));
            if (saved == NULL) {
                goto fail;
            }
        }
        PyObject *parents = node->parents;
        Py_INCREF(parents);
        vjp = PyObject_GetAttr(node->op, s_vjp);
        if (vjp == NULL) {
            Py_DECREF(parents);
            goto fail;
        }
        PyObject *params = node->params;
        if (PyDict_Check(params) && PyDict_GET_SIZE(params)) {
            PyObject *a = PyTuple_Pack(4, F, g, saved, parents);
            gis = a ? PyObject_Call(vjp, a, params) : NULL;
            Py_XDECREF(a);
        }
        else {
            PyObject *vargs[4] = {F, g, saved, parents};
            gis = PyObject_Vectorcall(vjp, vargs, 4, NULL);
        }
        Py_CLEAR(vjp);
        Py_CLEAR(g);  /* not held while the sums below allocate */
        Py_CLEAR(saved);
        if (gis == NULL) {
            Py_DECREF(parents);
            goto fail;
        }
        if (release) {
            PyObject *tp = node->tapes;
            if (PyAnySet_Check(tp) && PySet_GET_SIZE(tp) == 1) {  /* only this tape */
                set_field(&node->tapes, empty);
                set_field(&node->saved, Py_None);
                set_field(&node->extra, Py_None);  /* checkpoint bookkeeping goes too */
            }
            else {
                PyObject *r = PyObject_CallMethodOneArg(obj, s_drop_tape, tid);
                if (r == NULL) {
                    Py_DECREF(parents);
                    goto fail;
                }
                Py_DECREF(r);
            }
        }
        seq = PySequence_Fast(gis, "sweep: a vjp rule must return a tuple");
        if (seq == NULL) {
            Py_DECREF(parents);
            goto fail;
        }
        Py_ssize_t np_ = PyTuple_GET_SIZE(parents), ng = PySequence_Fast_GET_SIZE(seq);
        for (Py_ssize_t k = 0; k < np_ && k < ng; k++) {
            PyObject *pobj = PyTuple_GET_ITEM(parents, k);
            PyObject *gi = PySequence_Fast_GET_ITEM(seq, k);
            if (pobj == Py_None || gi == Py_None) {
                continue;
            }
            if (Py_TYPE(pobj) != R.node_type) {
                PyErr_SetString(PyExc_TypeError, "sweep: a parent is not a graph node");
                Py_DECREF(parents);
                goto fail;
            }
            NodeObject *p = (NodeObject *)pobj;
            int live = p->op != Py_None;
            if (live) {
                live = PySet_Contains(p->tapes, tid);
                if (live < 0) {
                    Py_DECREF(parents);
                    goto fail;
                }
            }
            if (!live) {  /* a leaf or another tape's node: only if someone asked for it */
                live = PySet_Contains(want, pobj);
                if (live <= 0) {
                    if (live < 0) {
                        Py_DECREF(parents);
                        goto fail;
                    }
                    continue;
                }
            }
            PyObject *fit = fit_to_parent(gi, p, F, sum_to, batch_nd, batch_obj);
            if (fit == NULL) {
                Py_DECREF(parents);
                goto fail;
            }
            PyObject *prev = PyDict_GetItemWithError(grads, pobj);
            int err;
            if (prev != NULL) {
                PyObject *sum = PyNumber_Add(prev, fit);
                err = sum == NULL ? -1 : PyDict_SetItem(grads, pobj, sum);
                Py_XDECREF(sum);
            }
            else {
                err = PyErr_Occurred() ? -1 : PyDict_SetItem(grads, pobj, fit);
            }
            Py_DECREF(fit);
            if (err < 0) {
                Py_DECREF(parents);
                goto fail;
            }
        }
        Py_DECREF(parents);
        Py_DECREF(seq);
        Py_DECREF(gis);  /* not held through the next node's restore and rule */
        seq = gis = NULL;
        if (ready_at != Py_None && report_ready(ready_at, obj, grads, on_ready) < 0) {
            goto fail;
        }
        Py_DECREF(node);
        continue;
    fail:
        Py_XDECREF(seq);
        Py_XDECREF(gis);
        Py_XDECREF(vjp);
        Py_XDECREF(saved);
        Py_XDECREF(g);
        Py_DECREF(node);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef native_methods[] = {
    {"configure", (PyCFunction)configure, METH_VARARGS,
     "configure(Node, Tensor, TrackedTensor, fix_out, layout_error, complex_error, "
     "(complex64, complex128)): enable record()."},
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL,
     "record(op, inputs, params, mode) -> TrackedTensor, or NotImplemented (Python path)."},
    {"sweep", (PyCFunction)(void (*)(void))sweep, METH_FASTCALL,
     "sweep(nodes, grads, want, found, ctx): sweep.run_sweep's loop without interceptors."},
    {"contract", contract, METH_NOARGS,
     "contract() -> {group: [name, ...]}: every name the compiled code reads from Python."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "autograd_gpu._native",
    .m_doc = "Optional compiled parts of autograd_gpu (pure-Python fallbacks exist for each).",
    .m_size = -1,
    .m_methods = native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *node_type = PyType_FromSpec(&node_spec);
    if (node_type == NULL || PyModule_AddObject(m, "Node", node_type) < 0) {
        Py_XDECREF(node_type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
