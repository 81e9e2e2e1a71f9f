/* autograd_gpu._hostpool: a small cache of large NumPy data blocks, used during reverse sweeps.
 *
 * Why: a training step frees the previous step's gradients and activations (megabytes each) and
 * allocates the same sizes again a moment later. glibc returns freed memory at the top of its
 * heap to the kernel once more than its trim threshold is free, so the next step takes one page
 * fault per 4 KiB page it writes: on the 2-core VM, about 900 more faults per MLP step than the
 * hand-written NumPy step, 4-7 ms of a 50 ms step, mostly inside the GEMMs that write fresh
 * weight gradients. Keeping freed blocks for reuse (what CuPy's pool does on the GPU) removes
 * them.
 *
 * How: NumPy (>= 1.22) lets a context install its own data allocator (PyDataMem_SetHandler; the
 * handler is a context variable, so the setting is per thread and per asyncio task). Every array
 * remembers the handler that allocated it and is freed through it, wherever it dies. This
 * handler serves requests of at least MIN_BLOCK bytes from blocks of exactly that size freed
 * earlier, newest first; everything else, and every miss, goes to NumPy's default handler (so
 * small arrays keep NumPy's own small-block cache and large ones its huge-page advice). Freed
 * large blocks are kept, oldest evicted first, while the total stays under the limit and there
 * are fewer than MAX_BLOCKS. NumPy reports allocations to tracemalloc outside the handler, so
 * memory measurements still see every live array and none of the cached blocks.
 *
 * The Python side (autograd_gpu/backend/host_pool.py) decides where the handler is active: the
 * tape's reverse sweep on the NumPy backend, so the arrays made there (gradients, recomputed
 * activations) come from and return to the cache. The functions below may run without the GIL
 * (NumPy does not promise to hold it), so the cache has its own lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>
#include <string.h>

#define MIN_BLOCK ((size_t)256 * 1024)
#define MAX_BLOCKS 64

static PyDataMem_Handler *fallback; /* NumPy's default handler */
static PyThread_type_lock lock;
static void *blocks[MAX_BLOCKS]; /* oldest first */
static size_t sizes[MAX_BLOCKS];
static int nblocks;
static size_t held_bytes, limit_bytes;
static unsigned long long hits, misses;

static void *
take(size_t size) /* a cached block of exactly `size` bytes, or NULL */
{
    void *p = NULL;
    PyThread_acquire_lock(lock, WAIT_LOCK);
    for (int i = nblocks - 1; i >= 0; i--) {
        if (sizes[i] == size) {
            p = blocks[i];
            held_bytes -= size;
            nblocks--;
            memmove(blocks + i, blocks + i + 1, (size_t)(nblocks - i) * sizeof(void *));
            memmove(sizes + i, sizes + i + 1, (size_t)(nblocks - i) * sizeof(size_t));
            break;
        }
    }
    if (p) {
        hits++;
    }
    else {
        misses++;
    }
    PyThread_release_lock(lock);
    return p;
}

/* Frees the oldest blocks until `room` more bytes and one more block fit. Lock held. */
static void
evict_for(size_t room)
{
    int drop = 0;
    while (drop < nblocks && (held_bytes + room > limit_bytes || nblocks - drop >= MAX_BLOCKS)) {
        fallback->allocator.free(fallback->allocator.ctx, blocks[drop], sizes[drop]);
        held_bytes -= sizes[drop];
        drop++;
    }
    if (drop) {
        nblocks -= drop;
        memmove(blocks, blocks + drop, (size_t)nblocks * sizeof(void *));
        memmove(sizes, sizes + drop, (size_t)nblocks * sizeof(size_t));
    }
}

static void *
pool_malloc(void *ctx, size_t size)
{
    void *p = size >= MIN_BLOCK ? take(size) : NULL;
    return p ? p : fallback->allocator.malloc(fallback->allocator.ctx, size);
}

static void *
pool_calloc(void *ctx, size_t nelem, size_t elsize)
{
    size_t size = nelem * elsize;
    void *p = (elsize && size / elsize == nelem && size >= MIN_BLOCK) ? take(size) : NULL;
    if (p) {
        memset(p, 0, size);
        return p;
    }
    return fallback->allocator.calloc(fallback->allocator.ctx, nelem, elsize);
}

static void *
pool_realloc(void *ctx, void *ptr, size_t size)
{
    return fallback->allocator.realloc(fallback->allocator.ctx, ptr, size);
}

static void
pool_free(void *ctx, void *ptr, size_t size)
{
    if (ptr != NULL && size >= MIN_BLOCK) {
        PyThread_acquire_lock(lock, WAIT_LOCK);
        if (size <= limit_bytes) {
            evict_for(size);
            blocks[nblocks] = ptr;
            sizes[nblocks] = size;
            nblocks++;
            held_bytes += size;
            PyThread_release_lock(lock);
            return;
        }
        PyThread_release_lock(lock);
    }
    fallback->allocator.free(fallback->allocator.ctx, ptr, size);
}

static PyDataMem_Handler pool_handler = {
    "autograd_gpu_host_pool",
    1,
    {NULL, pool_malloc, pool_calloc, pool_realloc, pool_free},
};
static PyObject *pool_capsule;

static PyObject *
activate(PyObject *mod, PyObject *unused)
{
    return PyDataMem_SetHandler(pool_capsule);
}

static PyObject *
restore(PyObject *mod, PyObject *previous)
{
    PyObject *now = PyDataMem_SetHandler(previous);
    if (now == NULL) {
        return NULL;
    }
    Py_DECREF(now);
    Py_RETURN_NONE;
}

static PyObject *
set_limit(PyObject *mod, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "set_limit expected a byte count >= 0, got %zd", n);
        return NULL;
    }
    PyThread_acquire_lock(lock, WAIT_LOCK);
    limit_bytes = (size_t)n;
    evict_for(0);
    PyThread_release_lock(lock);
    Py_RETURN_NONE;
}

static PyObject *
release(PyObject *mod, PyObject *unused)
{
    PyThread_acquire_lock(lock, WAIT_LOCK);
    size_t freed = held_bytes, keep = limit_bytes;
    limit_bytes = 0;
    evict_for(0);
    limit_bytes = keep;
    PyThread_release_lock(lock);
    return PyLong_FromSize_t(freed);
}

static PyObject *
stats(PyObject *mod, PyObject *unused)
{
    PyThread_acquire_lock(lock, WAIT_LOCK);
    size_t held = held_bytes, limit = limit_bytes;
    int n = nblocks;
    unsigned long long h = hits, m = misses;
    PyThread_release_lock(lock);
    return Py_BuildValue("{s:n,s:i,s:n,s:n,s:i,s:K,s:K}", "cached_bytes", (Py_ssize_t)held,
                         "cached_blocks", n, "limit_bytes", (Py_ssize_t)limit, "min_block_bytes",
                         (Py_ssize_t)MIN_BLOCK, "max_blocks", MAX_BLOCKS, "hits", h, "misses", m);
}

static PyObject *
after_fork_child(PyObject *mod, PyObject *unused)
{
    /* a thread of the parent may have held the lock when it forked: the child gets a new one
     * (the old one is leaked on purpose; it may be locked forever) */
    PyThread_type_lock fresh = PyThread_allocate_lock();
    if (fresh == NULL) {
        return PyErr_NoMemory();
    }
    lock = fresh;
    Py_RETURN_NONE;
}

static PyMethodDef pool_methods[] = {
    {"activate", activate, METH_NOARGS,
     "Make the pool this context's NumPy data allocator; returns the previous handler."},
    {"restore", restore, METH_O, "restore(previous): undo activate()."},
    {"set_limit", set_limit, METH_O, "set_limit(nbytes): most bytes kept; evicts down to it."},
    {"release", release, METH_NOARGS, "Free every cached block; returns the bytes freed."},
    {"stats", stats, METH_NOARGS, "Counters and sizes as a dict."},
    {"after_fork_child", after_fork_child, METH_NOARGS, "Replace the lock (os.register_at_fork)."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef pool_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "autograd_gpu._hostpool",
    .m_doc = "A cache of large NumPy data blocks for reverse sweeps (see _hostpool.c).",
    .m_size = -1,
    .m_methods = pool_methods,
};

PyMODINIT_FUNC
PyInit__hostpool(void)
{
    import_array();
    fallback = (PyDataMem_Handler *)PyCapsule_GetPointer(PyDataMem_DefaultHandler, "mem_handler");
    if (fallback == NULL) {
        return NULL;
    }
    lock = PyThread_allocate_lock();
    if (lock == NULL) {
        return PyErr_NoMemory();
    }
    pool_capsule = PyCapsule_New(&pool_handler, "mem_handler", NULL);
    if (pool_capsule == NULL) {
        return NULL;
    }
    return PyModule_Create(&pool_module);
}
