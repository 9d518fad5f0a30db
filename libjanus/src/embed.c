/* libjanus_embed: janus_embed.h over janus_deploy.runtime.embed, with the CPython C API. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "janus_embed.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef JANUS_DEFAULT_PYTHON
#define JANUS_DEFAULT_PYTHON "python3"
#endif

struct janus_rt {
    PyObject *rt; /* the EdgeRuntime */
    pthread_mutex_t lock;
    float *logits;
    size_t logits_cap;
    char *label, *model, *fallback_kind, *error, *record, *summary;
};

static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static PyObject *g_mod; /* janus_deploy.runtime.embed, once imported */

static int fail(janus_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void ok(janus_error *err) {
    if (err) {
        err->code = JANUS_OK;
        err->message[0] = '\0';
    }
}

/* The pending Python exception as one line (with the GIL held); clears it. */
static int py_fail(janus_error *err, const char *what) {
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    const char *name = type ? ((PyTypeObject *)type)->tp_name : "error";
    PyObject *s = value ? PyObject_Str(value) : NULL;
    const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
    if (!msg) PyErr_Clear();
    const char *dot = strrchr(name, '.');
    fail(err, JANUS_E_PYTHON, "%s: %s: %s", what, dot ? dot + 1 : name, msg ? msg : "(no message)");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return JANUS_E_PYTHON;
}

/* Where janus_deploy sits when this library was installed inside it
 * (<root>/janus_deploy/_libjanus/lib/libjanus_embed.so): <root> goes first on sys.path. */
static void add_package_root(void) {
    Dl_info info;
    if (!dladdr((const void *)&g_init_lock, &info) || !info.dli_fname) return; /* an address in this library */
    char path[4096];
    snprintf(path, sizeof path, "%s", info.dli_fname);
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(path, '/');
        if (!slash) return;
        *slash = '\0';
    }
    char probe[4200];
    struct stat st;
    snprintf(probe, sizeof probe, "%s/janus_deploy/__init__.py", path);
    if (stat(probe, &st) != 0) return;
    PyObject *sys_path = PySys_GetObject("path"); /* borrowed */
    PyObject *p = PyUnicode_DecodeFSDefault(path);
    if (sys_path && p) PyList_Insert(sys_path, 0, p);
    Py_XDECREF(p);
    PyErr_Clear();
}

static int start_python(const char *python, janus_error *err) {
    pthread_mutex_lock(&g_init_lock);
    if (g_mod) {
        pthread_mutex_unlock(&g_init_lock);
        return JANUS_OK;
    }
    int we_started = 0;
    if (!Py_IsInitialized()) {
        const char *exe = python ? python : getenv("JANUS_PYTHON");
        if (!exe || !*exe) exe = JANUS_DEFAULT_PYTHON;
        PyConfig config;
        PyConfig_InitPythonConfig(&config);
        config.install_signal_handlers = 0; /* SIGINT and friends stay the host app's */
        config.parse_argv = 0;
        PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, exe);
        if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(st)) {
            pthread_mutex_unlock(&g_init_lock);
            return fail(err, JANUS_E_PYTHON, "cannot start the embedded Python (%s): %s", exe,
                        st.err_msg ? st.err_msg : "unknown error");
        }
        we_started = 1;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    add_package_root();
    PyObject *mod = PyImport_ImportModule("janus_deploy.runtime.embed");
    int rc = JANUS_OK;
    if (!mod) rc = py_fail(err, "cannot import janus_deploy.runtime.embed (is janus-deploy installed in that Python?)");
    g_mod = mod;
    PyGILState_Release(g);
    if (we_started) PyEval_SaveThread(); /* release the GIL for good: every call takes it back */
    pthread_mutex_unlock(&g_init_lock);
    return rc;
}

static PyObject *str_or_none(const char *s) {
    if (s) return PyUnicode_FromString(s);
    Py_RETURN_NONE;
}

int janus_rt_open(const janus_rt_options *o, janus_rt **out, janus_error *err) {
    if (!out) return fail(err, JANUS_E_INVALID, "janus_rt_open: out is NULL");
    *out = NULL;
    if (!o || !o->plan || !o->engines || !o->edge_profile || !o->cloud_profile || !o->server_url)
        return fail(err, JANUS_E_INVALID, "janus_rt_open: plan, engines, edge_profile, cloud_profile and server_url "
                    "are required");
    if (!(o->sla_ms > 0)) return fail(err, JANUS_E_INVALID, "janus_rt_open: the SLA must be > 0 ms, got %g", o->sla_ms);
    int rc = start_python(o->python, err);
    if (rc) return rc;
    janus_rt *rt = calloc(1, sizeof *rt);
    if (!rt) return fail(err, JANUS_E_NOMEM, "out of memory");
    pthread_mutex_init(&rt->lock, NULL);
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *args = Py_BuildValue("(sssssdNNNN)", o->plan, o->engines, o->edge_profile, o->cloud_profile,
                                   o->server_url, o->sla_ms, str_or_none(o->accuracy), str_or_none(o->codec),
                                   str_or_none(o->log_path), str_or_none(o->options_json));
    PyObject *fn = args ? PyObject_GetAttrString(g_mod, "open_runtime") : NULL;
    rt->rt = fn ? PyObject_CallObject(fn, args) : NULL;
    if (!rt->rt) rc = py_fail(err, "janus_rt_open");
    Py_XDECREF(fn);
    Py_XDECREF(args);
    PyGILState_Release(g);
    if (rc) {
        pthread_mutex_destroy(&rt->lock);
        free(rt);
        return rc;
    }
    *out = rt;
    ok(err);
    return JANUS_OK;
}

static int keep_str(PyObject *v, char **slot) { /* None -> NULL; a str -> an owned copy */
    free(*slot);
    *slot = NULL;
    if (v == Py_None) return 0;
    const char *s = PyUnicode_AsUTF8(v);
    if (!s) return -1;
    size_t n = strlen(s) + 1;
    if (!(*slot = malloc(n))) return -1;
    memcpy(*slot, s, n);
    return 0;
}

int janus_rt_infer(janus_rt *rt, const uint8_t *rgb, int height, int width, janus_rt_result *res, janus_error *err) {
    if (!rt || !rgb || !res || height < 1 || width < 1)
        return fail(err, JANUS_E_INVALID, "janus_rt_infer: a runtime, a frame of at least 1x1 and a result are needed");
    memset(res, 0, sizeof *res);
    res->top1 = -1;
    pthread_mutex_lock(&rt->lock);
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = JANUS_OK;
    Py_ssize_t n = (Py_ssize_t)height * width * 3;
    PyObject *mv = PyMemoryView_FromMemory((char *)rgb, n, PyBUF_READ);
    PyObject *t = mv ? PyObject_CallMethod(g_mod, "infer", "OOii", rt->rt, mv, height, width) : NULL;
    Py_XDECREF(mv);
    if (!t || !PyTuple_Check(t) || PyTuple_Size(t) != 13) {
        if (t) PyErr_SetString(PyExc_TypeError, "embed.infer returned an unexpected value");
        rc = py_fail(err, "janus_rt_infer");
    } else {
        PyObject *logits = PyTuple_GET_ITEM(t, 2);
        res->id = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
        res->top1 = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
        res->level = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 3));
        res->split = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 4));
        res->alpha = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 5));
        res->predicted_ms = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 8));
        res->total_ms = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 9));
        if (logits != Py_None) {
            char *buf;
            Py_ssize_t len;
            if (PyBytes_AsStringAndSize(logits, &buf, &len) == 0) {
                size_t nf = (size_t)len / sizeof(float);
                if (nf > rt->logits_cap) {
                    float *nl = realloc(rt->logits, nf * sizeof(float));
                    if (nl) {
                        rt->logits = nl;
                        rt->logits_cap = nf;
                    }
                }
                if (nf <= rt->logits_cap) {
                    memcpy(rt->logits, buf, nf * sizeof(float));
                    res->logits = rt->logits;
                    res->num_classes = (int)nf;
                } else {
                    rc = fail(err, JANUS_E_NOMEM, "out of memory");
                }
            }
        }
        if (keep_str(PyTuple_GET_ITEM(t, 6), &rt->label) || keep_str(PyTuple_GET_ITEM(t, 7), &rt->model) ||
            keep_str(PyTuple_GET_ITEM(t, 10), &rt->fallback_kind) || keep_str(PyTuple_GET_ITEM(t, 11), &rt->error) ||
            keep_str(PyTuple_GET_ITEM(t, 12), &rt->record))
            rc = PyErr_Occurred() ? py_fail(err, "janus_rt_infer") : fail(err, JANUS_E_NOMEM, "out of memory");
        if (PyErr_Occurred()) rc = py_fail(err, "janus_rt_infer");
        res->label = rt->label;
        res->model = rt->model;
        res->fallback_kind = rt->fallback_kind;
        res->fallback = rt->fallback_kind != NULL;
        res->error = rt->error;
        res->record_json = rt->record;
    }
    Py_XDECREF(t);
    PyGILState_Release(g);
    pthread_mutex_unlock(&rt->lock);
    if (!rc) ok(err);
    return rc;
}

const char *janus_rt_summary(janus_rt *rt, janus_error *err) {
    if (!rt) {
        fail(err, JANUS_E_INVALID, "janus_rt_summary: runtime is NULL");
        return NULL;
    }
    pthread_mutex_lock(&rt->lock);
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *s = PyObject_CallMethod(g_mod, "summary", "O", rt->rt);
    const char *out = NULL;
    if (!s || keep_str(s, &rt->summary)) py_fail(err, "janus_rt_summary");
    else {
        out = rt->summary;
        ok(err);
    }
    Py_XDECREF(s);
    PyGILState_Release(g);
    pthread_mutex_unlock(&rt->lock);
    return out;
}

void janus_rt_close(janus_rt *rt) {
    if (!rt) return;
    pthread_mutex_lock(&rt->lock);
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallMethod(g_mod, "close", "O", rt->rt);
    if (!r) PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(rt->rt);
    PyGILState_Release(g);
    pthread_mutex_unlock(&rt->lock);
    pthread_mutex_destroy(&rt->lock);
    free(rt->logits);
    free(rt->label);
    free(rt->model);
    free(rt->fallback_kind);
    free(rt->error);
    free(rt->record);
    free(rt->summary);
    free(rt);
}
