/* sirius.tracing._fast: the tracer's hot calls as hand-written CPython C-API functions.
 *
 * Why not cffi: every cffi API-mode wrapper releases and re-takes the GIL, which costs ~40 ns a
 * call and, under contention, hands the GIL to a busy thread for up to the 5 ms switch interval
 * (native-tracer.md §4.3). These functions keep the GIL, take their arguments as METH_O /
 * METH_FASTCALL and call straight into the C core compiled into the same extension (one copy of
 * the thread-local buffers and globals). cffi keeps the control plane; `sirius_py_fast_init`, a
 * cffi-callable function, builds this module and registers it in sys.modules.
 *
 * Also here: span wrappers (a vectorcall object that brackets a call with begin/end), the
 * automatic function spans (a C profile hook on 3.11, sys.monitoring C callbacks on 3.12+) and
 * the hook that names a thread's stream after its Python thread.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sirius_tracing.h"

#define SR_LIKELY_PY(x) __builtin_expect(!!(x), 1)

extern void (*sr_thread_name_hook)(char *buf, size_t cap);
int sirius_py_fast_init(void);

#if PY_VERSION_HEX >= 0x030C0000
#define SR_HAVE_MONITORING 1
#define SR_CODE_GET_EXTRA PyUnstable_Code_GetExtra
#define SR_CODE_SET_EXTRA PyUnstable_Code_SetExtra
#define SR_REQUEST_EXTRA PyUnstable_Eval_RequestCodeExtraIndex
#else
#define SR_HAVE_MONITORING 0
#define SR_CODE_GET_EXTRA _PyCode_GetExtra
#define SR_CODE_SET_EXTRA _PyCode_SetExtra
#define SR_REQUEST_EXTRA _PyEval_RequestCodeExtraIndex
#endif

/* ---------------------------------------------------------------------------------------------
 * Desc: a registered descriptor (immortal C struct) wrapped for Python */

typedef struct {
    PyObject_HEAD const sirius_desc *desc;
    PyObject *bound[2]; /* cached __enter__ / __exit__ callables (SpanCall), made on first use */
} DescObject;

static PyTypeObject DescType;

static PyObject *desc_wrap(const sirius_desc *d) {
    DescObject *o = PyObject_New(DescObject, &DescType);
    if (o) {
        o->desc = d;
        o->bound[0] = o->bound[1] = NULL;
    }
    return (PyObject *)o;
}

/* `with desc:` without allocations. CPython looks __enter__ and __exit__ up on the type and
 * binds them through tp_descr_get, which for ordinary methods allocates two bound-method
 * objects per `with`. Here the type's __enter__/__exit__ are SpanSlot descriptors whose
 * tp_descr_get returns a SpanCall cached in the Descriptor: a vectorcall object that calls the
 * C core directly. A SpanCall holds the immortal C descriptor and a borrowed pointer to its
 * Descriptor (cleared when the Descriptor goes), so there is no reference cycle. */
typedef struct {
    PyObject_HEAD vectorcallfunc vectorcall;
    const sirius_desc *desc;
    PyObject *owner; /* borrowed: __enter__'s return value; NULL once the Descriptor is gone */
} SpanCallObject;

static PyObject *span_enter_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    (void)args;
    (void)nargsf;
    (void)kwnames;
    SpanCallObject *c = (SpanCallObject *)self;
    sirius_span_begin(c->desc);
    if (c->owner) return Py_NewRef(c->owner);
    Py_RETURN_NONE;
}

static PyObject *span_exit_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    (void)args;
    (void)nargsf;
    (void)kwnames;
    sirius_span_end(((SpanCallObject *)self)->desc);
    Py_RETURN_FALSE; /* never swallow the exception */
}

static PyTypeObject SpanCallType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sirius.tracing._fast.SpanCall",
    .tp_basicsize = sizeof(SpanCallObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A Descriptor's bound __enter__ or __exit__.",
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(SpanCallObject, vectorcall),
};

typedef struct {
    PyObject_HEAD int is_exit;
} SpanSlotObject;

static PyObject *span_slot_get(PyObject *self, PyObject *obj, PyObject *type) {
    (void)type;
    if (obj == NULL || !Py_IS_TYPE(obj, &DescType)) return Py_NewRef(self);
    DescObject *d = (DescObject *)obj;
    int which = ((SpanSlotObject *)self)->is_exit;
    if (!d->bound[which]) {
        SpanCallObject *c = PyObject_New(SpanCallObject, &SpanCallType);
        if (!c) return NULL;
        c->vectorcall = which ? span_exit_call : span_enter_call;
        c->desc = d->desc;
        c->owner = obj;
        d->bound[which] = (PyObject *)c;
    }
    return Py_NewRef(d->bound[which]);
}

static PyTypeObject SpanSlotType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sirius.tracing._fast.SpanSlot",
    .tp_basicsize = sizeof(SpanSlotObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Descriptor.__enter__ / __exit__ (bound without allocating).",
    .tp_descr_get = span_slot_get,
};

static void desc_dealloc(PyObject *self) {
    DescObject *d = (DescObject *)self;
    for (int i = 0; i < 2; i++) {
        if (d->bound[i]) {
            ((SpanCallObject *)d->bound[i])->owner = NULL;
            Py_CLEAR(d->bound[i]);
        }
    }
    Py_TYPE(self)->tp_free(self);
}

static int add_span_slots(void) {
    static const char *const names[2] = {"__enter__", "__exit__"};
    for (int i = 0; i < 2; i++) {
        SpanSlotObject *slot = PyObject_New(SpanSlotObject, &SpanSlotType);
        if (!slot) return -1;
        slot->is_exit = i;
        int rc = PyDict_SetItemString(DescType.tp_dict, names[i], (PyObject *)slot);
        Py_DECREF(slot);
        if (rc < 0) return -1;
    }
    PyType_Modified(&DescType);
    return 0;
}

static inline const sirius_desc *as_desc(PyObject *o) {
    if (SR_LIKELY_PY(Py_IS_TYPE(o, &DescType))) return ((DescObject *)o)->desc;
    PyErr_Format(PyExc_TypeError, "expected a sirius descriptor, got %.100s", Py_TYPE(o)->tp_name);
    return NULL;
}

static PyObject *desc_get_address(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)((DescObject *)self)->desc);
}

static PyObject *desc_get_name(PyObject *self, void *closure) {
    (void)closure;
    const char *n = ((DescObject *)self)->desc->name;
    return PyUnicode_DecodeUTF8(n ? n : "", (Py_ssize_t)strlen(n ? n : ""), "replace");
}

static PyObject *desc_get_kind(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong((long)((DescObject *)self)->desc->kind);
}

static PyObject *desc_repr(PyObject *self) {
    const sirius_desc *d = ((DescObject *)self)->desc;
    return PyUnicode_FromFormat("<sirius descriptor kind=%u name=%s target=%s>", d->kind, d->name ? d->name : "",
                                d->target ? d->target : "");
}

static PyObject *decorator; /* Python callable (desc, func) -> wrapped func: `@span("name")` */

static PyObject *desc_call(PyObject *self, PyObject *args, PyObject *kwargs) {
    if (!decorator || PyTuple_GET_SIZE(args) != 1 || (kwargs && PyDict_GET_SIZE(kwargs)))
        return PyErr_Format(PyExc_TypeError, "a span descriptor decorates one function: @span(\"name\")");
    return PyObject_CallFunctionObjArgs(decorator, self, PyTuple_GET_ITEM(args, 0), NULL);
}

static PyMethodDef desc_methods[] = {
    {NULL, NULL, 0, NULL}, /* __enter__ / __exit__: SpanSlot descriptors added at module init */
};

static PyGetSetDef desc_getset[] = {
    {"address", desc_get_address, NULL, "Address of the C descriptor (its identity).", NULL},
    {"name", desc_get_name, NULL, "Name (span, metric) or message (log).", NULL},
    {"kind", desc_get_kind, NULL, "SIRIUS_DESC_* kind.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DescType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sirius.tracing._fast.Descriptor",
    .tp_basicsize = sizeof(DescObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A registered call-site descriptor; a context manager for thread spans.",
    .tp_methods = desc_methods,
    .tp_getset = desc_getset,
    .tp_repr = desc_repr,
    .tp_call = desc_call,
    .tp_dealloc = desc_dealloc,
};

/* ---------------------------------------------------------------------------------------------
 * SpanWrapper: f(*args) bracketed by begin/end of a thread span, as one vectorcall */

typedef struct {
    PyObject_HEAD const sirius_desc *desc;
    PyObject *func;
    PyObject *dict;
    vectorcallfunc vectorcall;
} WrapperObject;

static PyObject *wrapper_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    WrapperObject *w = (WrapperObject *)self;
    sirius_span_begin(w->desc);
    PyObject *res = PyObject_Vectorcall(w->func, args, nargsf, kwnames);
    sirius_span_end(w->desc); /* also when the call raised: the span still ends */
    return res;
}

static int wrapper_traverse(PyObject *self, visitproc visit, void *arg) {
    WrapperObject *w = (WrapperObject *)self;
    Py_VISIT(w->func);
    Py_VISIT(w->dict);
    return 0;
}

static int wrapper_clear(PyObject *self) {
    WrapperObject *w = (WrapperObject *)self;
    Py_CLEAR(w->func);
    Py_CLEAR(w->dict);
    return 0;
}

static void wrapper_dealloc(PyObject *self) {
    PyObject_GC_UnTrack(self);
    wrapper_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *wrapper_descr_get(PyObject *self, PyObject *obj, PyObject *type) {
    (void)type;
    if (obj == NULL || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj); /* so a decorated method binds like a function */
}

static PyGetSetDef wrapper_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WrapperType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sirius.tracing._fast.SpanWrapper",
    .tp_basicsize = sizeof(WrapperObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A function wrapped in a thread span.",
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(WrapperObject, vectorcall),
    .tp_dictoffset = offsetof(WrapperObject, dict),
    .tp_traverse = wrapper_traverse,
    .tp_clear = wrapper_clear,
    .tp_dealloc = wrapper_dealloc,
    .tp_descr_get = wrapper_descr_get,
    .tp_getset = wrapper_getset,
};

/* ---------------------------------------------------------------------------------------------
 * module functions: registration (rare) and hot calls */

static PyObject *fast_desc(PyObject *mod, PyObject *args) {
    (void)mod;
    unsigned int kind, line, level;
    const char *name, *target, *module_path, *file, *unit;
    if (!PyArg_ParseTuple(args, "IzzzzIIz", &kind, &name, &target, &module_path, &file, &line, &level, &unit))
        return NULL;
    const sirius_desc *d = sirius_desc_new(kind, name, target, module_path, file, line, level, unit);
    if (!d) return PyErr_Format(PyExc_ValueError, "invalid descriptor kind %u", kind);
    return desc_wrap(d);
}

static PyObject *fast_begin(PyObject *mod, PyObject *arg) {
    (void)mod;
    if (SR_LIKELY_PY(Py_IS_TYPE(arg, &DescType))) {
        sirius_span_begin(((DescObject *)arg)->desc);
        Py_RETURN_NONE;
    }
    as_desc(arg); /* sets the TypeError */
    return NULL;
}

static PyObject *fast_end(PyObject *mod, PyObject *arg) {
    (void)mod;
    if (SR_LIKELY_PY(Py_IS_TYPE(arg, &DescType))) {
        sirius_span_end(((DescObject *)arg)->desc);
        Py_RETURN_NONE;
    }
    as_desc(arg); /* sets the TypeError */
    return NULL;
}

/* `span("name")`, the idiomatic form, as cheap as a cached descriptor: a str argument with no
 * keywords is looked up in a dict of descriptors (the str's hash is cached by CPython, so this
 * is one probe) and the descriptor itself is the context manager. Every other shape, and the
 * first call with a name, goes to the Python implementation, which fills the dict. */
static PyObject *span_cache;    /* dict: name -> Descriptor (default target) */
static PyObject *span_fallback; /* the Python `span` */
/* In front of the dict: the last descriptor found for a str object, by its address (a literal
 * at a call site is the same object every time). Strong references, so an address is never
 * reused while cached. */
#define SPAN_PCACHE 256
static PyObject *span_pkey[SPAN_PCACHE], *span_pval[SPAN_PCACHE];

static PyObject *fast_span(PyObject *mod, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    (void)mod;
    if (SR_LIKELY_PY(nargs == 1 && !kwnames && span_cache && PyUnicode_CheckExact(args[0]))) {
        PyObject *key = args[0];
        size_t h = ((uintptr_t)key >> 4) & (SPAN_PCACHE - 1);
        if (SR_LIKELY_PY(span_pkey[h] == key)) return Py_NewRef(span_pval[h]);
        PyObject *d = PyDict_GetItemWithError(span_cache, key); /* borrowed */
        if (SR_LIKELY_PY(d != NULL)) {
            Py_XSETREF(span_pkey[h], Py_NewRef(key));
            Py_XSETREF(span_pval[h], Py_NewRef(d));
            return Py_NewRef(d);
        }
        if (PyErr_Occurred()) return NULL;
    }
    if (!span_fallback) return PyErr_Format(PyExc_RuntimeError, "sirius.tracing span fallback not set");
    return PyObject_Vectorcall(span_fallback, args, (size_t)nargs, kwnames);
}

static PyObject *fast_set_span_fallback(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 2 || !PyDict_CheckExact(args[0]) || !PyCallable_Check(args[1]))
        return PyErr_Format(PyExc_TypeError, "set_span_fallback(cache: dict, fallback: callable)");
    Py_XSETREF(span_cache, Py_NewRef(args[0]));
    Py_XSETREF(span_fallback, Py_NewRef(args[1]));
    for (size_t i = 0; i < SPAN_PCACHE; i++) { /* answers from the previous dict */
        Py_CLEAR(span_pkey[i]);
        Py_CLEAR(span_pval[i]);
    }
    Py_RETURN_NONE;
}

static int check_nargs(const char *fn, Py_ssize_t nargs, Py_ssize_t want) {
    if (nargs == want) return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, want, nargs);
    return -1;
}

/* One log call, untagged (tagged = 0: folded away, sirius_log as before) or tagged. */
static inline __attribute__((always_inline)) void emit_log(const sirius_desc *d, int tagged, sirius_property_set ps,
                                                           const char *text, size_t len) {
    if (tagged) sirius_log_tagged(d, ps, text, len);
    else sirius_log(d, text, len);
}

static inline __attribute__((always_inline)) PyObject *log_message(const sirius_desc *d, int tagged,
                                                                   sirius_property_set ps, PyObject *msg) {
    Py_ssize_t len;
    const char *text;
    if (PyUnicode_Check(msg)) {
        text = PyUnicode_AsUTF8AndSize(msg, &len); /* cached for str; free for ASCII */
        if (!text) { /* lone surrogates: log a repaired copy rather than raise into the app */
            PyErr_Clear();
            PyObject *b = PyUnicode_AsEncodedString(msg, "utf-8", "replace");
            if (!b) return NULL;
            emit_log(d, tagged, ps, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
            Py_DECREF(b);
            Py_RETURN_NONE;
        }
    } else {
        PyObject *s = PyObject_Str(msg);
        if (!s) return NULL;
        text = PyUnicode_AsUTF8AndSize(s, &len);
        if (text) emit_log(d, tagged, ps, text, (size_t)len);
        Py_DECREF(s);
        if (!text) return NULL;
        Py_RETURN_NONE;
    }
    emit_log(d, tagged, ps, text, (size_t)len);
    Py_RETURN_NONE;
}

static PyObject *fast_log(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (check_nargs("log", nargs, 2) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    return log_message(d, 0, 0, args[1]);
}

/* One metric call: an int that fits i64 → integer event, anything else → float (tagged = 0 is
 * folded away, leaving the untagged calls as they were). */
static inline __attribute__((always_inline)) PyObject *metric_value(const sirius_desc *d, int tagged,
                                                                    sirius_property_set ps, PyObject *v) {
    if (PyFloat_CheckExact(v)) {
        if (tagged) sirius_metric_tagged_float(d, ps, PyFloat_AS_DOUBLE(v));
        else sirius_metric_float(d, PyFloat_AS_DOUBLE(v));
    } else if (PyLong_Check(v)) {
        int overflow = 0;
        long long i = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) {
            double f = PyLong_AsDouble(v);
            if (tagged) sirius_metric_tagged_float(d, ps, f);
            else sirius_metric_float(d, f);
        } else if (i == -1 && PyErr_Occurred()) {
            return NULL;
        } else if (tagged) {
            sirius_metric_tagged_int(d, ps, (int64_t)i);
        } else {
            sirius_metric_int(d, (int64_t)i);
        }
    } else {
        double f = PyFloat_AsDouble(v);
        if (f == -1.0 && PyErr_Occurred()) return NULL;
        if (tagged) sirius_metric_tagged_float(d, ps, f);
        else sirius_metric_float(d, f);
    }
    Py_RETURN_NONE;
}

static PyObject *fast_metric(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (check_nargs("metric", nargs, 2) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    return metric_value(d, 0, 0, args[1]);
}

/* ---------------------------------------------------------------------------------------------
 * property sets: interned once (property_set(mapping)), then passed by object to tagged calls */

typedef struct {
    PyObject_HEAD sirius_property_set id;
    Py_ssize_t count;
} PropertySetObject;

static PyObject *pset_repr(PyObject *self) {
    PropertySetObject *p = (PropertySetObject *)self;
    return PyUnicode_FromFormat("<sirius property set of %zd properties>", p->count);
}

static Py_ssize_t pset_len(PyObject *self) { return ((PropertySetObject *)self)->count; }

static PySequenceMethods pset_as_sequence = {.sq_length = pset_len};

static PyTypeObject PropertySetType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sirius.tracing._fast.PropertySet",
    .tp_basicsize = sizeof(PropertySetObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An interned property set (names and values) for tagged metrics and logs.",
    .tp_repr = pset_repr,
    .tp_as_sequence = &pset_as_sequence,
};

/* UTF-8 of a property name or value (lone surrogates repaired, as log messages are). New bytes. */
static PyObject *property_utf8(PyObject *key, PyObject *text, const char *what) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "property %s must be str, got %.100s (property %R)", what,
                     Py_TYPE(text)->tp_name, key);
        return NULL;
    }
    return PyUnicode_AsEncodedString(text, "utf-8", "replace");
}

static PyObject *fast_property_set(PyObject *mod, PyObject *arg) {
    (void)mod;
    if (!PyDict_Check(arg)) return PyErr_Format(PyExc_TypeError, "property_set() takes a dict of str to str");
    Py_ssize_t n = PyDict_GET_SIZE(arg);
    if (n > SIRIUS_MAX_PROPERTIES)
        return PyErr_Format(PyExc_ValueError, "a property set holds at most %d properties, got %zd",
                            SIRIUS_MAX_PROPERTIES, n);
    PyObject *keep = PyList_New(0); /* the UTF-8 copies, alive until the set is interned */
    const char **kv = PyMem_Calloc((size_t)(2 * n + 1), sizeof(const char *));
    size_t *lens = PyMem_Calloc((size_t)(2 * n + 1), sizeof(size_t));
    PyObject *result = NULL;
    if (!keep || !kv || !lens) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(arg, &pos, &key, &value)) {
        PyObject *texts[2] = {property_utf8(key, key, "name"), NULL};
        if (texts[0]) texts[1] = property_utf8(key, value, "value");
        for (int k = 0; k < 2; k++) {
            if (texts[k] && PyList_Append(keep, texts[k]) == 0) {
                kv[2 * i + k] = PyBytes_AS_STRING(texts[k]);
                lens[2 * i + k] = (size_t)PyBytes_GET_SIZE(texts[k]);
            }
        }
        Py_XDECREF(texts[0]);
        Py_XDECREF(texts[1]);
        if (PyErr_Occurred()) goto done;
        i++;
    }
    PropertySetObject *p = PyObject_New(PropertySetObject, &PropertySetType);
    if (!p) goto done;
    p->id = sirius_property_set_new(kv, lens, (size_t)i); /* 0 past the cap: records as the empty set */
    p->count = i;
    result = (PyObject *)p;
done:
    PyMem_Free(kv);
    PyMem_Free(lens);
    Py_XDECREF(keep);
    return result;
}

static inline sirius_property_set as_pset(PyObject *o, int *ok) {
    if (SR_LIKELY_PY(Py_IS_TYPE(o, &PropertySetType))) {
        *ok = 1;
        return ((PropertySetObject *)o)->id;
    }
    PyErr_Format(PyExc_TypeError, "expected a sirius property set, got %.100s", Py_TYPE(o)->tp_name);
    *ok = 0;
    return 0;
}

static PyObject *fast_log_tagged(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (check_nargs("log_tagged", nargs, 3) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    int ok;
    sirius_property_set ps = as_pset(args[1], &ok);
    if (!ok) return NULL;
    return log_message(d, 1, ps, args[2]);
}

static PyObject *fast_metric_tagged(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (check_nargs("metric_tagged", nargs, 3) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    int ok;
    sirius_property_set ps = as_pset(args[1], &ok);
    if (!ok) return NULL;
    return metric_value(d, 1, ps, args[2]);
}

static PyObject *fast_async(PyObject *const *args, Py_ssize_t nargs, int begin) {
    if (check_nargs(begin ? "begin_async" : "end_async", nargs, 4) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    unsigned long long id = PyLong_AsUnsignedLongLong(args[1]);
    unsigned long long parent = PyLong_AsUnsignedLongLong(args[2]);
    unsigned long depth = PyLong_AsUnsignedLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (begin) sirius_async_begin(d, id, parent, (uint32_t)depth);
    else sirius_async_end(d, id, parent, (uint32_t)depth);
    Py_RETURN_NONE;
}

static PyObject *fast_begin_async(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return fast_async(args, nargs, 1);
}

static PyObject *fast_end_async(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return fast_async(args, nargs, 0);
}

static PyObject *fast_async_named(PyObject *const *args, Py_ssize_t nargs, int begin) {
    if (check_nargs(begin ? "begin_async_named" : "end_async_named", nargs, 5) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(args[1], &len);
    if (!text) return NULL;
    unsigned long long id = PyLong_AsUnsignedLongLong(args[2]);
    unsigned long long parent = PyLong_AsUnsignedLongLong(args[3]);
    unsigned long depth = PyLong_AsUnsignedLong(args[4]);
    if (PyErr_Occurred()) return NULL;
    sirius_string name = sirius_intern(text, (size_t)len);
    if (begin) sirius_async_begin_named(d, name, id, parent, (uint32_t)depth);
    else sirius_async_end_named(d, name, id, parent, (uint32_t)depth);
    Py_RETURN_NONE;
}

static PyObject *fast_begin_async_named(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return fast_async_named(args, nargs, 1);
}

static PyObject *fast_end_async_named(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return fast_async_named(args, nargs, 0);
}

static PyObject *fast_named(PyObject *const *args, Py_ssize_t nargs, int begin) {
    if (check_nargs(begin ? "begin_named" : "end_named", nargs, 2) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(args[1], &len);
    if (!text) return NULL;
    sirius_string name = sirius_intern(text, (size_t)len);
    if (begin) sirius_span_begin_named(d, name);
    else sirius_span_end_named(d, name);
    Py_RETURN_NONE;
}

static PyObject *fast_begin_named(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return fast_named(args, nargs, 1);
}

static PyObject *fast_end_named(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return fast_named(args, nargs, 0);
}

static PyObject *fast_new_span_id(PyObject *mod, PyObject *unused) {
    (void)mod;
    (void)unused;
    return PyLong_FromUnsignedLongLong(sirius_new_span_id());
}

static PyObject *fast_wrap(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (check_nargs("wrap", nargs, 2) < 0) return NULL;
    const sirius_desc *d = as_desc(args[0]);
    if (!d) return NULL;
    if (!PyCallable_Check(args[1])) return PyErr_Format(PyExc_TypeError, "wrap() needs a callable");
    WrapperObject *w = PyObject_GC_New(WrapperObject, &WrapperType);
    if (!w) return NULL;
    w->desc = d;
    w->func = Py_NewRef(args[1]);
    w->dict = NULL;
    w->vectorcall = wrapper_vectorcall;
    PyObject_GC_Track((PyObject *)w);
    return (PyObject *)w;
}

static PyObject *fast_set_decorator(PyObject *mod, PyObject *arg) {
    (void)mod;
    Py_XSETREF(decorator, arg == Py_None ? NULL : Py_NewRef(arg));
    Py_RETURN_NONE;
}

static PyObject *fast_set_untraced(PyObject *mod, PyObject *arg) {
    (void)mod;
    sirius_set_thread_untraced(PyObject_IsTrue(arg));
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * thread names: a thread's stream is named after its Python thread (threading.current_thread) */

static PyObject *name_callable; /* returns the current thread's name */
static __thread int in_name_hook;

static void py_thread_name(char *buf, size_t cap) {
    if (!name_callable || in_name_hook || !Py_IsInitialized() || !PyGILState_Check()) return;
    in_name_hook = 1;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *r = PyObject_CallNoArgs(name_callable);
    if (r && PyUnicode_Check(r)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(r, &n);
        if (s) {
            size_t k = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
            memcpy(buf, s, k);
            buf[k] = 0;
        }
    }
    Py_XDECREF(r);
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    in_name_hook = 0;
}

static PyObject *fast_set_thread_name_hook(PyObject *mod, PyObject *arg) {
    (void)mod;
    Py_XSETREF(name_callable, arg == Py_None ? NULL : Py_NewRef(arg));
    sr_thread_name_hook = name_callable ? py_thread_name : NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * automatic function spans
 *
 * Each code object's decision is cached in its co_extra slot: an odd value means "not traced"
 * (generation in the upper bits), otherwise a pointer to a codeinfo with the span descriptor.
 * A new configuration bumps the generation, so stale decisions are recomputed on next sight.
 * Only the thread that holds the GIL touches these (all entry points run with the GIL). */

typedef struct {
    const sirius_desc *desc;
    uint64_t gen;
} codeinfo;

static Py_ssize_t extra_index = -1;
static uint64_t auto_gen = 1;
static int auto_enabled;
static PyObject *auto_include; /* tuple of str module prefixes */
static PyObject *auto_exclude;
static PyObject *disable_obj; /* sys.monitoring.DISABLE */
static __thread int auto_depth; /* auto spans open on this thread: never end more than began */

static int module_matches(PyObject *name, PyObject *prefixes) {
    if (!prefixes) return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(prefixes);
    Py_ssize_t nlen = PyUnicode_GET_LENGTH(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyTuple_GET_ITEM(prefixes, i);
        Py_ssize_t plen = PyUnicode_GET_LENGTH(p);
        if (plen > nlen) continue;
        if (PyUnicode_Tailmatch(name, p, 0, plen, -1) != 1) continue;
        if (plen == nlen || PyUnicode_READ_CHAR(name, plen) == '.') return 1;
    }
    return 0;
}

static const sirius_desc *classify(PyCodeObject *co, void *extra, PyObject *globals) {
    PyObject *module = NULL;
    if (globals && PyDict_Check(globals)) module = PyDict_GetItemString(globals, "__name__"); /* borrowed */
    int traced = module && PyUnicode_Check(module) && module_matches(module, auto_include) &&
                 !module_matches(module, auto_exclude);
    if (!traced) {
        SR_CODE_SET_EXTRA((PyObject *)co, extra_index, (void *)(uintptr_t)((auto_gen << 1) | 1));
        return NULL;
    }
    codeinfo *ci = (extra && !((uintptr_t)extra & 1)) ? extra : NULL;
    if (!ci) {
        const char *qualname = PyUnicode_AsUTF8(co->co_qualname);
        const char *file = PyUnicode_AsUTF8(co->co_filename);
        const char *mod = PyUnicode_AsUTF8(module);
        if (!qualname || !file || !mod) {
            PyErr_Clear();
            return NULL;
        }
        const sirius_desc *d =
            sirius_desc_new(SIRIUS_DESC_SPAN, qualname, mod, mod, file, (uint32_t)co->co_firstlineno, 0, NULL);
        ci = d ? malloc(sizeof *ci) : NULL;
        if (!ci) return NULL;
        ci->desc = d; /* immortal, like the descriptor: the code object may outlive any config */
    }
    ci->gen = auto_gen;
    SR_CODE_SET_EXTRA((PyObject *)co, extra_index, ci);
    return ci->desc;
}

static inline const sirius_desc *auto_lookup(PyCodeObject *co, PyFrameObject *frame) {
    void *extra = NULL;
    if (SR_CODE_GET_EXTRA((PyObject *)co, extra_index, &extra) < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (extra) {
        uintptr_t v = (uintptr_t)extra;
        if (v & 1) {
            if ((v >> 1) == auto_gen) return NULL;
        } else if (((codeinfo *)extra)->gen == auto_gen) {
            return ((codeinfo *)extra)->desc;
        }
    }
    if (!auto_enabled) return NULL;
    PyObject *globals = NULL;
    if (!frame) frame = PyEval_GetFrame(); /* borrowed: the frame being entered/left */
    if (frame) globals = PyFrame_GetGlobals(frame);
    const sirius_desc *d = classify(co, extra, globals);
    Py_XDECREF(globals);
    return d;
}

static inline void auto_begin(const sirius_desc *d) {
    auto_depth++;
    sirius_span_begin(d);
}

static inline void auto_end(const sirius_desc *d) {
    if (auto_depth > 0) { /* a function already running when tracing started has no begin */
        auto_depth--;
        sirius_span_end(d);
    }
}

/* CPython 3.11 (and as a fallback): a C profile hook on each thread. */
static int profile_cb(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
    (void)obj;
    (void)arg;
    if (what != PyTrace_CALL && what != PyTrace_RETURN) return 0;
    PyCodeObject *co = PyFrame_GetCode(frame);
    const sirius_desc *d = auto_lookup(co, frame);
    Py_DECREF(co);
    if (d) {
        if (what == PyTrace_CALL) auto_begin(d);
        else auto_end(d);
    }
    return 0;
}

static PyObject *fast_auto_configure(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *include, *exclude;
    int enabled;
    if (!PyArg_ParseTuple(args, "O!O!p", &PyTuple_Type, &include, &PyTuple_Type, &exclude, &enabled)) return NULL;
    if (extra_index < 0) {
        extra_index = SR_REQUEST_EXTRA(NULL);
        if (extra_index < 0) return PyErr_Format(PyExc_RuntimeError, "no free code extra slot");
    }
    Py_XSETREF(auto_include, Py_NewRef(include));
    Py_XSETREF(auto_exclude, Py_NewRef(exclude));
    auto_enabled = enabled;
    auto_gen++;
    Py_RETURN_NONE;
}

static PyObject *fast_profile_install(PyObject *mod, PyObject *arg) {
    (void)mod;
    if (PyObject_IsTrue(arg)) PyEval_SetProfile(profile_cb, NULL);
    else PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
}

/* threading.setprofile(bootstrap): each new thread calls it once, and it installs the C hook
 * in place of itself. */
static PyObject *fast_profile_bootstrap(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    (void)args;
    (void)nargs;
    if (auto_enabled) PyEval_SetProfile(profile_cb, NULL);
    else PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
}

static PyObject *fast_set_disable(PyObject *mod, PyObject *arg) {
    (void)mod;
    Py_XSETREF(disable_obj, Py_NewRef(arg));
    Py_RETURN_NONE;
}

/* sys.monitoring callbacks (3.12+). Returning DISABLE switches the event off at that code
 * location for good (until restart_events), so code outside the selection costs ~nothing.
 * PY_UNWIND and PY_THROW cannot be disabled: they only filter. */
static inline PyObject *mon_code(PyObject *const *args, Py_ssize_t nargs, PyCodeObject **co) {
    if (nargs < 1 || !PyCode_Check(args[0])) return NULL;
    *co = (PyCodeObject *)args[0];
    return args[0];
}

static inline PyObject *mon_disable(void) { return Py_NewRef(disable_obj ? disable_obj : Py_None); }

static PyObject *fast_mon_start(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    PyCodeObject *co;
    if (!mon_code(args, nargs, &co)) Py_RETURN_NONE;
    const sirius_desc *d = auto_lookup(co, NULL);
    if (!d) return mon_disable();
    auto_begin(d);
    Py_RETURN_NONE;
}

static PyObject *fast_mon_return(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    PyCodeObject *co;
    if (!mon_code(args, nargs, &co)) Py_RETURN_NONE;
    const sirius_desc *d = auto_lookup(co, NULL);
    if (!d) return mon_disable();
    auto_end(d);
    Py_RETURN_NONE;
}

static PyObject *fast_mon_unwind(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    PyCodeObject *co;
    if (!mon_code(args, nargs, &co)) Py_RETURN_NONE;
    const sirius_desc *d = auto_lookup(co, NULL);
    if (d) auto_end(d);
    Py_RETURN_NONE;
}

static PyObject *fast_mon_throw(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    PyCodeObject *co;
    if (!mon_code(args, nargs, &co)) Py_RETURN_NONE;
    const sirius_desc *d = auto_lookup(co, NULL);
    if (d) auto_begin(d);
    Py_RETURN_NONE;
}

static PyObject *fast_auto_reset_depth(PyObject *mod, PyObject *unused) {
    (void)mod;
    (void)unused;
    auto_depth = 0;
    Py_RETURN_NONE;
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef fast_methods[] = {
    {"desc", fast_desc, METH_VARARGS, "desc(kind, name, target, module_path, file, line, level, unit)"},
    {"span", (PyCFunction)(void (*)(void))fast_span, METH_FASTCALL | METH_KEYWORDS,
     "span(name_or_func=None, /, *, name=None, target=None)\n--\n\n"
     "A span decorator or context manager: ``with span(\"name\"):``, ``@span``, ``@span(\"name\")``.\n\n"
     "``span(\"name\")`` returns the cached descriptor of that name (a context manager and a\n"
     "decorator); a function argument returns it wrapped in a span named after it."},
    {"set_span_fallback", FASTCALL(fast_set_span_fallback), "set_span_fallback(cache, fallback) for span()."},
    {"begin", fast_begin, METH_O, "begin(desc): begin a thread span."},
    {"end", fast_end, METH_O, "end(desc): end a thread span."},
    {"log", FASTCALL(fast_log), "log(desc, msg): a log entry with a dynamic message."},
    {"metric", FASTCALL(fast_metric), "metric(desc, value): int → integer metric, else float."},
    {"property_set", fast_property_set, METH_O, "property_set(dict of str to str): an interned PropertySet."},
    {"log_tagged", FASTCALL(fast_log_tagged), "log_tagged(desc, property_set, msg): a tagged log entry."},
    {"metric_tagged", FASTCALL(fast_metric_tagged), "metric_tagged(desc, property_set, value): a tagged metric."},
    {"begin_async", FASTCALL(fast_begin_async), "begin_async(desc, span_id, parent_span_id, depth)"},
    {"end_async", FASTCALL(fast_end_async), "end_async(desc, span_id, parent_span_id, depth)"},
    {"begin_async_named", FASTCALL(fast_begin_async_named),
     "begin_async_named(location, name, span_id, parent_span_id, depth)"},
    {"end_async_named", FASTCALL(fast_end_async_named), "end_async_named(location, name, span_id, parent_span_id, depth)"},
    {"begin_named", FASTCALL(fast_begin_named), "begin_named(location, name)"},
    {"end_named", FASTCALL(fast_end_named), "end_named(location, name)"},
    {"new_span_id", fast_new_span_id, METH_NOARGS, "A process-unique async span id."},
    {"wrap", FASTCALL(fast_wrap), "wrap(desc, func): func bracketed by a thread span."},
    {"set_decorator", fast_set_decorator, METH_O, "Callable (desc, func) used by Descriptor.__call__."},
    {"set_untraced", fast_set_untraced, METH_O, "Mark the calling thread untraced (or not)."},
    {"set_thread_name_hook", fast_set_thread_name_hook, METH_O, "Callable naming new thread streams."},
    {"auto_configure", fast_auto_configure, METH_VARARGS, "auto_configure(include, exclude, enabled)"},
    {"profile_install", fast_profile_install, METH_O, "Install (True) or remove the C profile hook here."},
    {"profile_bootstrap", FASTCALL(fast_profile_bootstrap), "threading.setprofile target."},
    {"set_disable", fast_set_disable, METH_O, "Give sys.monitoring.DISABLE."},
    {"mon_start", FASTCALL(fast_mon_start), "PY_START / PY_RESUME callback."},
    {"mon_return", FASTCALL(fast_mon_return), "PY_RETURN / PY_YIELD callback."},
    {"mon_unwind", FASTCALL(fast_mon_unwind), "PY_UNWIND callback."},
    {"mon_throw", FASTCALL(fast_mon_throw), "PY_THROW callback."},
    {"auto_reset_depth", fast_auto_reset_depth, METH_NOARGS, "Forget this thread's open auto spans."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT, "sirius.tracing._fast", "Hot calls of the native tracer (GIL kept).", -1,
    fast_methods, NULL, NULL, NULL, NULL,
};

/* Called through cffi (which released the GIL): build the module once, register it. */
int sirius_py_fast_init(void) {
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = -1;
    PyObject *modules = PyImport_GetModuleDict();
    if (PyDict_GetItemString(modules, "sirius.tracing._fast")) {
        rc = 0;
        goto done;
    }
    if (PyType_Ready(&DescType) < 0 || PyType_Ready(&WrapperType) < 0 || PyType_Ready(&SpanCallType) < 0 ||
        PyType_Ready(&SpanSlotType) < 0 || PyType_Ready(&PropertySetType) < 0 || add_span_slots() < 0)
        goto done;
    PyObject *m = PyModule_Create(&fast_module);
    if (!m) goto done;
    if (PyModule_AddObjectRef(m, "Descriptor", (PyObject *)&DescType) < 0 ||
        PyModule_AddObjectRef(m, "SpanWrapper", (PyObject *)&WrapperType) < 0 ||
        PyModule_AddObjectRef(m, "PropertySet", (PyObject *)&PropertySetType) < 0 ||
        PyModule_AddIntConstant(m, "HAVE_MONITORING", SR_HAVE_MONITORING) < 0 ||
        PyDict_SetItemString(modules, "sirius.tracing._fast", m) < 0) {
        Py_DECREF(m);
        goto done;
    }
    Py_DECREF(m);
    rc = 0;
done:
    if (rc < 0) PyErr_Print();
    PyGILState_Release(g);
    return rc;
}
