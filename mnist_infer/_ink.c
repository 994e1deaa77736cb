/* The first layer of the network for uint8 images, adding up only the inked pixels.

   Four in five MNIST pixels are blank (0), and a blank pixel adds nothing to x @ W1: so for
   each image this adds, to the bias row, the rows of W1 of its inked pixels, each times its
   value. For the textbook's network that is about a fifth of the dense product's work.

   first_layer(x, d, w, wcols, out, ostride, h) -> None
     x     uint8 images, n rows of d pixels, C order
     w     float32 panels of 64 columns of (W1, then the bias row): wcols / 64 panels of
           d + 1 rows of 64 floats, wcols a multiple of 64, columns h.. zero
     out   float32, n rows of ostride floats; the first h of each row are written
   supported() -> bool: whether this CPU runs first_layer (x86-64 with AVX2 and FMA).

   The GIL is released while it runs, so threads can share out the images. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2 1
#include <immintrin.h>
#endif

#define BLOCK 64 /* columns per pass over an image: 8 registers of 8 floats */
#define CHUNK 32 /* pixels tested for ink at once */

#ifdef HAVE_AVX2

#define FMA8(r, v)                                                   \
    do {                                                             \
        a0 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 0), a0);   \
        a1 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 8), a1);   \
        a2 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 16), a2);  \
        a3 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 24), a3);  \
        a4 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 32), a4);  \
        a5 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 40), a5);  \
        a6 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 48), a6);  \
        a7 = _mm256_fmadd_ps((v), _mm256_loadu_ps((r) + 56), a7);  \
    } while (0)

__attribute__((target("avx2,fma"))) static void
first_layer_avx2(const uint8_t *x, Py_ssize_t n, Py_ssize_t d, const float *w,
                 Py_ssize_t wcols, float *out, Py_ssize_t ostride, Py_ssize_t h)
{
    const __m256i zero = _mm256_setzero_si256();
    const Py_ssize_t full = d - d % CHUNK;
    uint8_t tail[CHUNK] = {0}; /* the last d % CHUNK pixels, padded with blanks */
    float acc[BLOCK];
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = x + i * d;
        memcpy(tail, p + full, (size_t)(d - full));
        for (Py_ssize_t k = 0; k < h; k += BLOCK) {
            const float *panel = w + (k / BLOCK) * (d + 1) * BLOCK; /* rows of BLOCK floats */
            const float *b = panel + d * BLOCK;
            __m256 a0 = _mm256_loadu_ps(b), a1 = _mm256_loadu_ps(b + 8),
                   a2 = _mm256_loadu_ps(b + 16), a3 = _mm256_loadu_ps(b + 24),
                   a4 = _mm256_loadu_ps(b + 32), a5 = _mm256_loadu_ps(b + 40),
                   a6 = _mm256_loadu_ps(b + 48), a7 = _mm256_loadu_ps(b + 56);
            for (Py_ssize_t j = 0; j < d; j += CHUNK) {
                const uint8_t *c = j < full ? p + j : tail;
                __m256i v = _mm256_loadu_si256((const __m256i *)c);
                uint32_t inked = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, zero));
                while (inked) {
                    Py_ssize_t e = j + __builtin_ctz(inked);
                    inked &= inked - 1;
                    __m256 s = _mm256_set1_ps((float)p[e]);
                    FMA8(panel + e * BLOCK, s);
                }
            }
            _mm256_storeu_ps(acc, a0);
            _mm256_storeu_ps(acc + 8, a1);
            _mm256_storeu_ps(acc + 16, a2);
            _mm256_storeu_ps(acc + 24, a3);
            _mm256_storeu_ps(acc + 32, a4);
            _mm256_storeu_ps(acc + 40, a5);
            _mm256_storeu_ps(acc + 48, a6);
            _mm256_storeu_ps(acc + 56, a7);
            Py_ssize_t m = h - k < BLOCK ? h - k : BLOCK;
            memcpy(out + i * ostride + k, acc, (size_t)m * sizeof(float));
        }
    }
}

static int
cpu_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#else

static int
cpu_supported(void)
{
    return 0;
}

#endif

static PyObject *
supported(PyObject *self, PyObject *args)
{
    return PyBool_FromLong(cpu_supported());
}

static PyObject *
first_layer(PyObject *self, PyObject *args)
{
    Py_buffer x, w, out;
    Py_ssize_t d, wcols, ostride, h;
    if (!PyArg_ParseTuple(args, "y*ny*nw*nn", &x, &d, &w, &wcols, &out, &ostride, &h))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = d > 0 ? x.len / d : 0;
    if (!cpu_supported()) {
        PyErr_SetString(PyExc_RuntimeError, "first_layer needs an x86-64 CPU with AVX2 and FMA");
    }
    else if (d < 1 || x.len != n * d) {
        PyErr_Format(PyExc_ValueError, "x holds %zd bytes, not rows of d=%zd pixels", x.len, d);
    }
    else if (h < 1 || wcols < h || wcols % BLOCK != 0 || d + 1 > PY_SSIZE_T_MAX / wcols
             || w.len != (d + 1) * wcols * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError,
                     "w holds %zd bytes, expected %zd rows of wcols=%zd floats (a multiple of "
                     "%d, at least h=%zd)", w.len, d + 1, wcols, BLOCK, h);
    }
    else if (ostride < h || (n > 0 && (n - 1 > (PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(float) - h) / ostride
                                       || out.len < ((n - 1) * ostride + h) * (Py_ssize_t)sizeof(float)))) {
        PyErr_Format(PyExc_ValueError, "out holds %zd bytes, too few for %zd rows of %zd floats",
                     out.len, n, ostride);
    }
    else {
#ifdef HAVE_AVX2
        Py_BEGIN_ALLOW_THREADS
        first_layer_avx2((const uint8_t *)x.buf, n, d, (const float *)w.buf, wcols,
                         (float *)out.buf, ostride, h);
        Py_END_ALLOW_THREADS
#endif
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&w);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"first_layer", first_layer, METH_VARARGS, "x @ W1 + b1 over the inked pixels only."},
    {"supported", supported, METH_NOARGS, "Whether this CPU can run first_layer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ink", "The first layer over inked pixels only.", -1, methods,
};

PyMODINIT_FUNC
PyInit__ink(void)
{
    return PyModule_Create(&module);
}
