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
    PyObject *ids;
    PyObject *tapes;
    PyObject *gen;
    PyObject *out_meta;
    PyObject *site;
    PyObject *extra;
    PyObject *weakreflist;
} NodeObject;

static int
node_init(NodeObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *op, *params, *parents, *in_meta, *saved, *tapes, *gen, *out_meta, *ids;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Node() takes positional arguments only");
        return -1;
    }
    if (!PyArg_UnpackTuple(args, "Node", 9, 9, &op, &params, &parents, &in_meta, &saved,
                           &tapes, &gen, &out_meta, &ids)) {
        return -1;
    }
    int has_saved = PyObject_IsTrue(saved);
    if (has_saved < 0) {
        return -1;
    }
    /* saved_map: computed on first use from ids when something is saved, else empty */
    PyObject *smap = has_saved ? Py_None : PyTuple_New(0);
    if (smap == NULL) {
        return -1;
    }
    if (has_saved) {
        Py_INCREF(smap);
    }
    Py_INCREF(op);
    Py_INCREF(params);
    Py_INCREF(parents);
    Py_INCREF(in_meta);
    Py_INCREF(saved);
    Py_INCREF(ids);
    Py_INCREF(tapes);
    Py_INCREF(gen);
    Py_INCREF(out_meta);
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    Py_XSETREF(self->op, op);
    Py_XSETREF(self->params, params);
    Py_XSETREF(self->parents, parents);
    Py_XSETREF(self->in_meta, in_meta);
    Py_XSETREF(self->saved, saved);
    Py_XSETREF(self->smap, smap);
    Py_XSETREF(self->ids, ids);
    Py_XSETREF(self->tapes, tapes);
    Py_XSETREF(self->gen, gen);
    Py_XSETREF(self->out_meta, out_meta);
    Py_XSETREF(self->site, Py_None);
    Py_XSETREF(self->extra, Py_None);
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
    Py_CLEAR(self->ids);
    Py_CLEAR(self->tapes);
    Py_CLEAR(self->gen);
    Py_CLEAR(self->out_meta);
    Py_CLEAR(self->site);
    Py_CLEAR(self->extra);
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
    MEMBER("_smap", smap),
    MEMBER("_ids", ids),
    MEMBER("tapes", tapes),
    MEMBER("gen", gen),
    MEMBER("out_meta", out_meta),
    MEMBER("site", site),
    MEMBER("extra", extra),
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

static PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "autograd_gpu._native",
    .m_doc = "Optional compiled parts of autograd_gpu (pure-Python fallbacks exist for each).",
    .m_size = -1,
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
