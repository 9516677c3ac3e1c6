/*
 * The keys and posting sets of one index block, from a Builder's field values
 * (native counterpart of search_index.writer.postings and block_rows, in the
 * block format of search_index.codec; the Python code is the reference, and
 * tests/crm/test_index_format.py checks the constants below agree with codec's).
 *
 *     rows(fields, positions, sparse_max) -> [(key, n, data), ...]
 *     postings(fields, positions) -> {key: [offset, ...]}
 *     text_rows(offsets, texts, positions, sparse_max)  -- rows() of the texts
 *     text_postings(offsets, texts, positions)           -- postings() of the texts
 *
 * ``fields[j]`` maps each value of field ``j`` to the offsets (0..65535, in any
 * order, repeats allowed) of the contacts having it. Keys are every 1-, 2- and
 * 3-character substring of every value (shared by all fields), and every
 * trigram at its place: ``trigram + "\x1f" + "j.o"`` for a trigram starting at
 * offset ``o < positions`` of a value of field ``j``, ``trigram + "\x1f" + "j.*"``
 * for one starting further on.
 *
 * ``text_rows`` and ``text_postings`` take the block's contacts instead: the
 * contact at ``offsets[k]`` has search text ``texts[k]``, split on ``"\x1f"``
 * into fields 0, 1, ...; they group the texts by field value themselves (what
 * search_index.Builder does in Python), so each distinct value's keys are still
 * computed once.
 *
 * ``rows`` gives each key's set encoded as stored: ``n`` members, ``data`` =
 * ``b"S"`` + the sorted offsets as little-endian uint16 when ``n <= sparse_max``,
 * else ``b"D"`` + a bitmap of 65,536 bits (bit ``o`` = byte ``o >> 3``, bit
 * ``o & 7``); rows are sorted by key. ``postings`` gives each key's sorted
 * distinct offsets.
 *
 * Keys are collected in an open-addressing hash table over a compact binary key
 * (code points, field, position); each key's offsets are appended to an array
 * that becomes a bitmap once it would outgrow one. No Python object is created
 * (so no Python code can run) until every value has been read.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 65536
#define BITMAP_BYTES (BLOCK / 8)
/* a key's offsets are kept as a bitmap once the array would take more room */
#define PROMOTE (BITMAP_BYTES / 2)
/* Slot.len of a key whose offsets are a bitmap */
#define BITS (PROMOTE + 1)
/* up to this many offsets are sorted in place (insertion sort), more by radix sort */
#define SMALL_SORT 48
#define FAR UINT32_MAX
#define LIMIT (1 << 30)
/* slots fetched this many keys ahead */
#define AHEAD 8

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

/*
 * One key and its offsets (the hash table's slot: everything a lookup needs is
 * in one place). The key: a = code points c0 | c1 << 21 | c2 << 42 (unused 0);
 * b = number of code points (1..3) | field << 2 | pos << 32, field and pos 0 for
 * a plain gram, else the field number and 1 + o for a trigram at offset
 * o < positions, FAR for one further on. b == 0: an empty slot.
 */
typedef struct {
    uint64_t a;
    uint64_t b;
    uint16_t *offs;  /* offsets as added (room for capacity(len)), or a bitmap (len == BITS) */
    uint32_t len;
    uint32_t stamp;  /* the last value that added its offsets */
} Slot;

/* A key of the current value, with its hash. */
typedef struct {
    uint64_t a, b, hash;
} Pending;

typedef struct {
    Slot *slots;
    size_t mask;     /* slot count - 1 */
    size_t count;
    uint32_t stamp;
    uint32_t *chars; /* code points of the current value */
    size_t chars_cap;
    Pending *keys;   /* keys of the current value */
    size_t keys_cap;
    uint16_t *offs;  /* offsets of the current value */
    size_t offs_cap;
} Table;

static uint64_t
hash_key(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9E3779B97F4A7C15ULL;
    h = (h << 31 | h >> 33) ^ (b * 0xC2B2AE3D27D4EB4FULL);
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDULL;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 33;
    return h;
}

/* The room allocated for len (> 0) offsets: a power of two, at least 4. */
static size_t
capacity(size_t len)
{
    if (len <= 4) {
        return 4;
    }
    return (size_t)1 << (64 - __builtin_clzll((unsigned long long)len - 1));
}

static void
table_free(Table *t)
{
    if (t->slots != NULL) {
        for (size_t i = 0; i <= t->mask; i++) {
            PyMem_Free(t->slots[i].offs);
        }
    }
    PyMem_Free(t->slots);
    PyMem_Free(t->chars);
    PyMem_Free(t->keys);
    PyMem_Free(t->offs);
    memset(t, 0, sizeof(*t));
}

static int
table_init(Table *t)
{
    memset(t, 0, sizeof(*t));
    t->mask = 4096 - 1;
    t->slots = PyMem_Calloc(t->mask + 1, sizeof(Slot));
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int
table_grow(Table *t)
{
    size_t size = (t->mask + 1) * 2;
    if (size > ((size_t)1 << 32) || size > PY_SSIZE_T_MAX / sizeof(Slot)) {
        PyErr_SetString(PyExc_OverflowError, "too many index keys");
        return -1;
    }
    Slot *slots = PyMem_Calloc(size, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = size - 1;
    for (size_t i = 0; i <= t->mask; i++) {
        Slot *s = &t->slots[i];
        if (s->b == 0) {
            continue;
        }
        size_t at = (size_t)hash_key(s->a, s->b) & mask;
        while (slots[at].b != 0) {
            at = (at + 1) & mask;
        }
        slots[at] = *s;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return 0;
}

static void
set_bits(uint8_t *bits, const uint16_t *offs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bits[offs[i] >> 3] |= (uint8_t)(1u << (offs[i] & 7));
    }
}

/* Add the current value's n offsets (offs) to a key, once per value. */
static int
add_key(Table *t, uint64_t a, uint64_t b, uint64_t hash, const uint16_t *offs, size_t n)
{
    size_t at = (size_t)hash & t->mask;
    Slot *s;
    for (;;) {
        s = &t->slots[at];
        if (s->b == b && s->a == a) {
            break;
        }
        if (s->b == 0) {
            if ((t->count + 1) * 2 > t->mask + 1) {
                if (table_grow(t) < 0) {
                    return -1;
                }
                return add_key(t, a, b, hash, offs, n);
            }
            s->a = a;
            s->b = b;
            t->count++;
            break;
        }
        at = (at + 1) & t->mask;
    }
    if (s->stamp == t->stamp) {
        return 0;
    }
    s->stamp = t->stamp;
    if (n == 0) {
        return 0;
    }
    if (s->len == BITS) {
        set_bits((uint8_t *)s->offs, offs, n);
        return 0;
    }
    if (n > PROMOTE - s->len) {
        uint8_t *bits = PyMem_Calloc(BITMAP_BYTES, 1);
        if (bits == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        set_bits(bits, s->offs, s->len);
        set_bits(bits, offs, n);
        PyMem_Free(s->offs);
        s->offs = (uint16_t *)bits;
        s->len = BITS;
        return 0;
    }
    size_t len = s->len + n;
    if (s->offs == NULL || len > capacity(s->len)) {
        uint16_t *grown = PyMem_Realloc(s->offs, capacity(len) * sizeof(uint16_t));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->offs = grown;
    }
    if (n == 1) {
        s->offs[s->len] = offs[0];
    }
    else {
        memcpy(s->offs + s->len, offs, n * sizeof(uint16_t));
    }
    s->len = (uint32_t)len;
    return 0;
}

/* Read one offset (an exact int in 0..65535) into out; 0, or -1 with an exception set. */
static int
read_offset(PyObject *item, uint16_t *out)
{
    /* an exact int only: anything else could run Python code mid-iteration */
    if (!PyLong_CheckExact(item)) {
        PyErr_Format(PyExc_TypeError, "offsets must be ints, not %.200s",
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    int overflow = 0;
    long value = PyLong_AsLongAndOverflow(item, &overflow);
    if (overflow != 0 || value < 0 || value >= BLOCK) {
        PyErr_SetString(PyExc_ValueError, "an offset is outside 0..65535");
        return -1;
    }
    *out = (uint16_t)value;
    return 0;
}

/* Read one value's offsets into t->offs; their number, or -1 with an exception set. */
static Py_ssize_t
read_offsets(Table *t, PyObject *offsets)
{
    if (!PyList_Check(offsets) && !PyTuple_Check(offsets)) {
        PyErr_Format(PyExc_TypeError, "offsets must be a list, not %.200s",
                     Py_TYPE(offsets)->tp_name);
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(offsets);
    PyObject **items = PySequence_Fast_ITEMS(offsets);
    if ((size_t)n > t->offs_cap) {
        size_t cap = (size_t)n < 64 ? 64 : (size_t)n;
        uint16_t *offs = PyMem_Realloc(t->offs, cap * sizeof(uint16_t));
        if (offs == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->offs = offs;
        t->offs_cap = cap;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + AHEAD < n) {
            PREFETCH(items[i + AHEAD]);
        }
        if (read_offset(items[i], &t->offs[i]) < 0) {
            return -1;
        }
    }
    return n;
}

/* Read a str's code points into t->chars; their number, or -1 with an exception set. */
static Py_ssize_t
read_chars(Table *t, PyObject *value, const char *what)
{
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.200s", what,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(value) < 0) {
        return -1;
    }
#endif
    Py_ssize_t len = PyUnicode_GET_LENGTH(value);
    if ((size_t)len > t->chars_cap) {
        size_t cap = (size_t)len < 256 ? 256 : (size_t)len;
        if (cap > PY_SSIZE_T_MAX / sizeof(uint32_t)) {
            PyErr_NoMemory();
            return -1;
        }
        uint32_t *chars = PyMem_Realloc(t->chars, cap * sizeof(uint32_t));
        if (chars == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->chars = chars;
        t->chars_cap = cap;
    }
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    for (Py_ssize_t i = 0; i < len; i++) {
        t->chars[i] = (uint32_t)PyUnicode_READ(kind, data, i);
    }
    return len;
}

/* Add a value's keys (c: len code points of a value of field number field >> 2)
 * with its n offsets (offs). The keys are listed first so that the slots of the
 * next ones can be fetched while one is added. */
static int
add_value(Table *t, uint64_t field, const uint32_t *c, Py_ssize_t len, Py_ssize_t positions,
          const uint16_t *offs, size_t n)
{
    if ((size_t)len > t->keys_cap / 4) {
        if ((size_t)len > PY_SSIZE_T_MAX / (4 * sizeof(Pending))) {
            PyErr_NoMemory();
            return -1;
        }
        size_t cap = 4 * ((size_t)len < 64 ? 64 : (size_t)len);
        Pending *keys = PyMem_Realloc(t->keys, cap * sizeof(Pending));
        if (keys == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->keys = keys;
        t->keys_cap = cap;
    }
    Pending *keys = t->keys;
    size_t count = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        uint64_t a = c[i];
        keys[count++] = (Pending){a, 1, 0};
        if (i + 1 >= len) {
            continue;
        }
        a |= (uint64_t)c[i + 1] << 21;
        keys[count++] = (Pending){a, 2, 0};
        if (i + 2 >= len) {
            continue;
        }
        a |= (uint64_t)c[i + 2] << 42;
        keys[count++] = (Pending){a, 3, 0};
        uint64_t pos = i < positions ? (uint64_t)i + 1 : FAR;
        keys[count++] = (Pending){a, 3 | field | pos << 32, 0};
    }
    for (size_t k = 0; k < count; k++) {
        keys[k].hash = hash_key(keys[k].a, keys[k].b);
        if (k < AHEAD) {
            PREFETCH(&t->slots[keys[k].hash & t->mask]);
        }
    }
    for (size_t k = 0; k < count; k++) {
        if (k + AHEAD < count) {
            PREFETCH(&t->slots[keys[k + AHEAD].hash & t->mask]);
        }
        if (add_key(t, keys[k].a, keys[k].b, keys[k].hash, offs, n) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Every key of every value of every field, with its offsets. */
static int
collect(Table *t, PyObject *fields, Py_ssize_t positions)
{
    Py_ssize_t count = PyList_GET_SIZE(fields);
    if (count >= LIMIT) {
        PyErr_SetString(PyExc_ValueError, "too many fields");
        return -1;
    }
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *values = PyList_GET_ITEM(fields, j);
        if (!PyDict_Check(values)) {
            PyErr_Format(PyExc_TypeError, "fields must hold dicts, not %.200s",
                         Py_TYPE(values)->tp_name);
            return -1;
        }
        Py_ssize_t at = 0;
        PyObject *value, *offsets;
        while (PyDict_Next(values, &at, &value, &offsets)) {
            Py_ssize_t len = read_chars(t, value, "field values");
            if (len < 0) {
                return -1;
            }
            Py_ssize_t got = read_offsets(t, offsets);
            if (got < 0) {
                return -1;
            }
            size_t n = (size_t)got;
            if (t->stamp == UINT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "too many field values");
                return -1;
            }
            t->stamp++;
            if (add_value(t, (uint64_t)j << 2, t->chars, len, positions, t->offs, n) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

static size_t
popcount(const uint8_t *bits)
{
    size_t n = 0;
    for (size_t i = 0; i < BITMAP_BYTES; i += 8) {
        uint64_t word;
        memcpy(&word, bits + i, 8);
        word -= (word >> 1) & 0x5555555555555555ULL;
        word = (word & 0x3333333333333333ULL) + ((word >> 2) & 0x3333333333333333ULL);
        word = (word + (word >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        n += (size_t)((word * 0x0101010101010101ULL) >> 56);
    }
    return n;
}

/* The members of a bitmap in order, into out; their number. */
static size_t
bitmap_members(const uint8_t *bits, uint16_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < BITMAP_BYTES; i += 8) {
        uint64_t word;
        memcpy(&word, bits + i, 8);
        if (word == 0) {
            continue;
        }
        for (size_t b = i; b < i + 8; b++) {
            unsigned byte = bits[b];
            while (byte != 0) {
                unsigned bit = (unsigned)__builtin_ctz(byte);
                out[n++] = (uint16_t)(b * 8 + bit);
                byte &= byte - 1;
            }
        }
    }
    return n;
}

/* A key's n members: sorted distinct offsets (list), or a bitmap (bits). */
typedef struct {
    const uint16_t *list;
    const uint8_t *bits;   /* non-NULL: the members are here, list is unused */
    size_t n;
} Members;

/* Sort offsets (two counting passes, low byte then high byte) into out. */
static void
radix_sort(const uint16_t *offs, size_t len, uint16_t *tmp, uint16_t *out)
{
    size_t low[257] = {0}, high[257] = {0};
    for (size_t i = 0; i < len; i++) {
        low[(offs[i] & 0xFF) + 1]++;
        high[(offs[i] >> 8) + 1]++;
    }
    for (size_t b = 1; b < 257; b++) {
        low[b] += low[b - 1];
        high[b] += high[b - 1];
    }
    for (size_t i = 0; i < len; i++) {
        tmp[low[offs[i] & 0xFF]++] = offs[i];
    }
    for (size_t i = 0; i < len; i++) {
        out[high[tmp[i] >> 8]++] = tmp[i];
    }
}

/* A key's members. Offsets as added: sorted (in place when few, else into
 * sorted with tmp's help) and de-duplicated; a bitmap: as it is. */
static Members
members_of(Slot *s, uint16_t *sorted, uint16_t *tmp)
{
    Members m = {NULL, NULL, 0};
    if (s->len == BITS) {
        m.bits = (const uint8_t *)s->offs;
        m.n = popcount(m.bits);
        return m;
    }
    uint16_t *offs = s->offs;
    size_t len = s->len;
    if (len > SMALL_SORT) {
        radix_sort(offs, len, tmp, sorted);
        offs = sorted;
    }
    else {
        for (size_t i = 1; i < len; i++) {  /* insertion sort */
            uint16_t o = offs[i];
            size_t k = i;
            for (; k > 0 && offs[k - 1] > o; k--) {
                offs[k] = offs[k - 1];
            }
            offs[k] = o;
        }
    }
    size_t kept = len > 0;
    for (size_t i = 1; i < len; i++) {
        if (offs[i] != offs[kept - 1]) {
            offs[kept++] = offs[i];
        }
    }
    m.list = offs;
    m.n = kept;
    return m;
}

/* The key as a str: the gram, plus "\x1f" "j.o" / "j.*" for a positioned trigram. */
static PyObject *
key_str(const Slot *k)
{
    uint32_t c[3] = {(uint32_t)(k->a & 0x1FFFFF), (uint32_t)(k->a >> 21 & 0x1FFFFF),
                     (uint32_t)(k->a >> 42 & 0x1FFFFF)};
    uint32_t count = (uint32_t)(k->b & 3);
    uint32_t field = (uint32_t)(k->b >> 2 & (LIMIT - 1));
    uint32_t pos = (uint32_t)(k->b >> 32);
    char suffix[48];
    int extra = 0;
    if (pos == FAR) {
        extra = snprintf(suffix, sizeof(suffix), "\x1f%u.*", (unsigned)field);
    }
    else if (pos != 0) {
        extra = snprintf(suffix, sizeof(suffix), "\x1f%u.%u", (unsigned)field,
                         (unsigned)(pos - 1));
    }
    if (extra < 0 || (size_t)extra >= sizeof(suffix)) {
        PyErr_SetString(PyExc_SystemError, "index key suffix too long");
        return NULL;
    }
    Py_UCS4 maxchar = extra ? 0x7F : 0;
    for (uint32_t i = 0; i < count; i++) {
        if (c[i] > maxchar) {
            maxchar = c[i];
        }
    }
    Py_ssize_t len = (Py_ssize_t)count + extra;
    PyObject *s = PyUnicode_New(len, maxchar);
    if (s == NULL) {
        return NULL;
    }
    int kind = PyUnicode_KIND(s);
    void *data = PyUnicode_DATA(s);
    for (uint32_t i = 0; i < count; i++) {
        PyUnicode_WRITE(kind, data, i, c[i]);
    }
    for (int i = 0; i < extra; i++) {
        PyUnicode_WRITE(kind, data, (Py_ssize_t)count + i, (Py_UCS4)(unsigned char)suffix[i]);
    }
    return s;
}

/* Working memory of the output phase. */
typedef struct {
    uint8_t bits[BITMAP_BYTES];  /* all zero between keys */
    uint16_t sorted[PROMOTE];
    uint16_t tmp[PROMOTE];
    uint16_t members[BLOCK];
} Scratch;

/* A key's members as sorted distinct offsets. */
static const uint16_t *
member_list(const Members *m, Scratch *scratch)
{
    if (m->bits == NULL) {
        return m->list;
    }
    bitmap_members(m->bits, scratch->members);
    return scratch->members;
}

/* The stored form of a key's set: b"S" + little-endian uint16 offsets, or b"D" + bitmap. */
static PyObject *
encode(const Members *m, size_t sparse_max, Scratch *scratch)
{
    if (m->n > sparse_max) {
        PyObject *out = PyBytes_FromStringAndSize(NULL, 1 + BITMAP_BYTES);
        if (out == NULL) {
            return NULL;
        }
        char *p = PyBytes_AS_STRING(out);
        p[0] = 'D';
        if (m->bits != NULL) {
            memcpy(p + 1, m->bits, BITMAP_BYTES);
        }
        else {
            set_bits(scratch->bits, m->list, m->n);
            memcpy(p + 1, scratch->bits, BITMAP_BYTES);
            memset(scratch->bits, 0, BITMAP_BYTES);
        }
        return out;
    }
    const uint16_t *list = member_list(m, scratch);
    PyObject *out = PyBytes_FromStringAndSize(NULL, 1 + 2 * (Py_ssize_t)m->n);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    p[0] = 'S';
    for (size_t i = 0; i < m->n; i++) {
        p[1 + 2 * i] = (unsigned char)(list[i] & 0xFF);
        p[2 + 2 * i] = (unsigned char)(list[i] >> 8);
    }
    return out;
}

/* The rows of a collected table: [(key, n, data)] sorted by key; NULL on error. */
static PyObject *
rows_of(Table *t, size_t sparse_max)
{
    Scratch *scratch = PyMem_Calloc(1, sizeof(Scratch));
    if (scratch == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *out = PyList_New((Py_ssize_t)t->count);
    if (out == NULL) {
        goto done;
    }
    Py_ssize_t made = 0;
    for (size_t i = 0; i <= t->mask; i++) {
        Slot *s = &t->slots[i];
        if (s->b == 0) {
            continue;
        }
        Members m = members_of(s, scratch->sorted, scratch->tmp);
        PyObject *data = encode(&m, sparse_max, scratch);
        PyObject *key = data ? key_str(s) : NULL;
        PyObject *n = key ? PyLong_FromSize_t(m.n) : NULL;
        PyObject *row = n ? PyTuple_New(3) : NULL;
        if (row == NULL) {
            Py_XDECREF(data);
            Py_XDECREF(key);
            Py_XDECREF(n);
            Py_CLEAR(out);
            goto done;
        }
        PyTuple_SET_ITEM(row, 0, key);
        PyTuple_SET_ITEM(row, 1, n);
        PyTuple_SET_ITEM(row, 2, data);
        PyList_SET_ITEM(out, made, row);
        made++;
    }
    if (PyList_Sort(out) < 0) {
        Py_CLEAR(out);
    }
done:
    PyMem_Free(scratch);
    return out;
}

/* The postings of a collected table: {key: [offset, ...]}; NULL on error. */
static PyObject *
postings_of(Table *t)
{
    PyObject *out = NULL;
    Scratch *scratch = PyMem_Calloc(1, sizeof(Scratch));
    PyObject **ints = PyMem_Calloc(BLOCK, sizeof(PyObject *));  /* each offset's int, made once */
    if (scratch == NULL || ints == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyDict_New();
    if (out == NULL) {
        goto done;
    }
    for (size_t i = 0; i <= t->mask; i++) {
        Slot *s = &t->slots[i];
        if (s->b == 0) {
            continue;
        }
        Members m = members_of(s, scratch->sorted, scratch->tmp);
        const uint16_t *list = member_list(&m, scratch);
        PyObject *offsets = PyList_New((Py_ssize_t)m.n);
        if (offsets == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        for (size_t k = 0; k < m.n; k++) {
            PyObject *value = ints[list[k]];
            if (value == NULL) {
                value = PyLong_FromLong(list[k]);
                if (value == NULL) {
                    Py_DECREF(offsets);
                    Py_CLEAR(out);
                    goto done;
                }
                ints[list[k]] = value;
            }
            Py_INCREF(value);
            PyList_SET_ITEM(offsets, (Py_ssize_t)k, value);
        }
        PyObject *key = key_str(s);
        if (key == NULL || PyDict_SetItem(out, key, offsets) < 0) {
            Py_XDECREF(key);
            Py_DECREF(offsets);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(key);
        Py_DECREF(offsets);
    }
done:
    if (ints != NULL) {
        for (size_t k = 0; k < BLOCK; k++) {
            Py_XDECREF(ints[k]);
        }
    }
    PyMem_Free(ints);
    PyMem_Free(scratch);
    return out;
}

/*
 * Grouping a block's search texts by field value (what search_index.Builder
 * does in Python): each text is split on "\x1f" into fields 0, 1, ...; each
 * distinct non-empty (field, value) is kept once (its code points in an arena,
 * found again through a hash index), and each use of it, (value, offset), is
 * recorded. The uses are then bucketed by value so that each value's keys are
 * added once with all its offsets. Empty values have no keys and are skipped.
 */
typedef struct {
    uint64_t hash;
    size_t start;   /* code points: arena[start .. start + len) */
    size_t len;
    size_t field;
    size_t count;   /* uses of it */
    size_t first;   /* where its offsets start in the bucketed offsets */
} Value;

typedef struct {
    uint32_t value;  /* index in values */
    uint16_t offset;
} Use;

typedef struct {
    Value *values;
    size_t nvalues, values_cap;
    uint32_t *index;  /* open addressing: index in values + 1, 0 = empty */
    size_t index_mask;
    uint32_t *arena;
    size_t arena_len, arena_cap;
    Use *uses;
    size_t nuses, uses_cap;
} Groups;

/* p (capacity *cap items of size bytes) with room for need items: p itself, or
 * moved with its capacity doubled as needed; NULL with an exception set (p is
 * then unchanged and still owned by the caller). */
static void *
reserve(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap && p != NULL) {
        return p;
    }
    size_t grown = *cap < 64 ? 64 : *cap;
    while (grown < need) {
        if (grown > PY_SSIZE_T_MAX / 2 / size) {
            return PyErr_NoMemory();
        }
        grown *= 2;
    }
    void *q = PyMem_Realloc(p, grown * size);
    if (q == NULL) {
        return PyErr_NoMemory();
    }
    *cap = grown;
    return q;
}

static void
groups_free(Groups *g)
{
    PyMem_Free(g->values);
    PyMem_Free(g->index);
    PyMem_Free(g->arena);
    PyMem_Free(g->uses);
    memset(g, 0, sizeof(*g));
}

static uint64_t
hash_chars(const uint32_t *c, size_t len, size_t field)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ c[i]) * 0x100000001B3ULL;
    }
    return hash_key(h, (uint64_t)len << 32 ^ (uint64_t)field);
}

static int
groups_grow_index(Groups *g)
{
    size_t size = g->index == NULL ? 4096 : (g->index_mask + 1) * 2;
    if (size > PY_SSIZE_T_MAX / sizeof(uint32_t)) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t *index = PyMem_Calloc(size, sizeof(uint32_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = size - 1;
    for (size_t v = 0; v < g->nvalues; v++) {
        size_t at = (size_t)g->values[v].hash & mask;
        while (index[at] != 0) {
            at = (at + 1) & mask;
        }
        index[at] = (uint32_t)(v + 1);
    }
    PyMem_Free(g->index);
    g->index = index;
    g->index_mask = mask;
    return 0;
}

/* Record a use of value c (len > 0 code points) of field number field at offset. */
static int
groups_add(Groups *g, const uint32_t *c, size_t len, size_t field, uint16_t offset)
{
    uint64_t hash = hash_chars(c, len, field);
    size_t at = (size_t)hash & g->index_mask;
    size_t found;
    for (;;) {
        uint32_t id = g->index[at];
        if (id == 0) {
            break;
        }
        const Value *v = &g->values[id - 1];
        if (v->hash == hash && v->len == len && v->field == field
                && memcmp(g->arena + v->start, c, len * sizeof(uint32_t)) == 0) {
            found = id - 1;
            goto use;
        }
        at = (at + 1) & g->index_mask;
    }
    if (g->nvalues >= UINT32_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many field values");
        return -1;
    }
    if ((g->nvalues + 1) * 2 > g->index_mask + 1) {
        if (groups_grow_index(g) < 0) {
            return -1;
        }
        at = (size_t)hash & g->index_mask;
        while (g->index[at] != 0) {
            at = (at + 1) & g->index_mask;
        }
    }
    if (len > PY_SSIZE_T_MAX - g->arena_len) {
        PyErr_NoMemory();
        return -1;
    }
    Value *values = reserve(g->values, &g->values_cap, g->nvalues + 1, sizeof(Value));
    if (values == NULL) {
        return -1;
    }
    g->values = values;
    uint32_t *arena = reserve(g->arena, &g->arena_cap, g->arena_len + len, sizeof(uint32_t));
    if (arena == NULL) {
        return -1;
    }
    g->arena = arena;
    found = g->nvalues++;
    g->values[found] = (Value){hash, g->arena_len, len, field, 0, 0};
    memcpy(g->arena + g->arena_len, c, len * sizeof(uint32_t));
    g->arena_len += len;
    g->index[at] = (uint32_t)(found + 1);
use:;
    Use *uses = reserve(g->uses, &g->uses_cap, g->nuses + 1, sizeof(Use));
    if (uses == NULL) {
        return -1;
    }
    g->uses = uses;
    g->uses[g->nuses++] = (Use){(uint32_t)found, offset};
    g->values[found].count++;
    return 0;
}

/* Every key of every field value of the texts (texts[k] at offsets[k]), with its
 * offsets: the same keys and sets as collect() over the texts grouped by field value. */
static int
collect_texts(Table *t, PyObject *offsets, PyObject *texts, Py_ssize_t positions)
{
    Groups g;
    memset(&g, 0, sizeof(g));
    uint16_t *bucketed = NULL;
    int result = -1;
    if (groups_grow_index(&g) < 0) {
        goto done;
    }
    Py_ssize_t count = PyList_GET_SIZE(texts);
    for (Py_ssize_t k = 0; k < count; k++) {
        uint16_t offset;
        if (read_offset(PyList_GET_ITEM(offsets, k), &offset) < 0) {
            goto done;
        }
        Py_ssize_t len = read_chars(t, PyList_GET_ITEM(texts, k), "search texts");
        if (len < 0) {
            goto done;
        }
        const uint32_t *c = t->chars;
        size_t field = 0, start = 0;
        for (size_t i = 0; i <= (size_t)len; i++) {
            if (i < (size_t)len && c[i] != 0x1F) {
                continue;
            }
            if (i > start) {
                if (field >= LIMIT) {
                    PyErr_SetString(PyExc_ValueError, "too many fields");
                    goto done;
                }
                if (groups_add(&g, c + start, i - start, field, offset) < 0) {
                    goto done;
                }
            }
            field++;
            start = i + 1;
        }
    }
    size_t total = 0;
    for (size_t v = 0; v < g.nvalues; v++) {
        g.values[v].first = total;
        total += g.values[v].count;
    }
    bucketed = PyMem_Malloc(total ? total * sizeof(uint16_t) : 1);
    if (bucketed == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t u = 0; u < g.nuses; u++) {  /* first: where the value's next offset goes */
        bucketed[g.values[g.uses[u].value].first++] = g.uses[u].offset;
    }
    for (size_t v = 0; v < g.nvalues; v++) {
        const Value *value = &g.values[v];
        if (t->stamp == UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "too many field values");
            goto done;
        }
        t->stamp++;
        if (add_value(t, (uint64_t)value->field << 2, g.arena + value->start,
                      (Py_ssize_t)value->len, positions,
                      bucketed + (value->first - value->count), value->count) < 0) {
            goto done;
        }
    }
    result = 0;
done:
    PyMem_Free(bucketed);
    groups_free(&g);
    return result;
}

static int
check_args(PyObject *fields, Py_ssize_t positions)
{
    if (!PyList_Check(fields)) {
        PyErr_Format(PyExc_TypeError, "fields must be a list, not %.200s",
                     Py_TYPE(fields)->tp_name);
        return -1;
    }
    if (positions < 0 || positions >= LIMIT) {
        PyErr_SetString(PyExc_ValueError, "positions must be in 0..2**30 - 1");
        return -1;
    }
    return 0;
}

static int
check_sparse_max(Py_ssize_t sparse_max)
{
    if (sparse_max < 1 || sparse_max > BLOCK) {
        PyErr_SetString(PyExc_ValueError, "sparse_max must be in 1..65536");
        return -1;
    }
    return 0;
}

static int
check_texts(PyObject *offsets, PyObject *texts, Py_ssize_t positions)
{
    if (!PyList_Check(offsets)) {
        PyErr_Format(PyExc_TypeError, "offsets must be a list, not %.200s",
                     Py_TYPE(offsets)->tp_name);
        return -1;
    }
    if (check_args(texts, positions) < 0) {
        return -1;
    }
    if (PyList_GET_SIZE(offsets) != PyList_GET_SIZE(texts)) {
        PyErr_SetString(PyExc_ValueError, "offsets and texts differ in length");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(rows_doc,
"rows(fields, positions, sparse_max, /)\n--\n\n"
"The index rows of a block: [(key, n, data)] sorted by key, each set encoded\n"
"as stored (b\"S\" + little-endian uint16 offsets up to sparse_max members,\n"
"else b\"D\" + an 8,192-byte bitmap).");

/* The body shared by the four entry points: collect the block (from ``fields`` when
 * ``texts`` is NULL, else from ``offsets`` / ``texts``), then build its rows
 * (``want_rows``) or its postings. */
static PyObject *
build(PyObject *fields, PyObject *offsets, PyObject *texts, Py_ssize_t positions,
      int want_rows, Py_ssize_t sparse_max)
{
    if ((texts == NULL ? check_args(fields, positions)
                       : check_texts(offsets, texts, positions)) < 0
        || (want_rows && check_sparse_max(sparse_max) < 0)) {
        return NULL;
    }
    Table t;
    if (table_init(&t) < 0) {
        return NULL;
    }
    PyObject *out = NULL;
    PyObject *held[2] = {texts == NULL ? fields : offsets, texts};
    Py_XINCREF(held[0]);
    Py_XINCREF(held[1]);
    int collected = texts == NULL ? collect(&t, fields, positions)
                                  : collect_texts(&t, offsets, texts, positions);
    if (collected == 0) {
        out = want_rows ? rows_of(&t, (size_t)sparse_max) : postings_of(&t);
    }
    Py_XDECREF(held[0]);
    Py_XDECREF(held[1]);
    table_free(&t);
    return out;
}

static PyObject *
rows(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *fields;
    Py_ssize_t positions, sparse_max;
    if (!PyArg_ParseTuple(args, "Onn:rows", &fields, &positions, &sparse_max)) {
        return NULL;
    }
    return build(fields, NULL, NULL, positions, 1, sparse_max);
}

PyDoc_STRVAR(postings_doc,
"postings(fields, positions, /)\n--\n\n"
"Each key of a block -> its sorted distinct offsets.");

static PyObject *
postings(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *fields;
    Py_ssize_t positions;
    if (!PyArg_ParseTuple(args, "On:postings", &fields, &positions)) {
        return NULL;
    }
    return build(fields, NULL, NULL, positions, 0, 0);
}

PyDoc_STRVAR(text_rows_doc,
"text_rows(offsets, texts, positions, sparse_max, /)\n--\n\n"
"rows() of the block whose contact at offsets[k] has search text texts[k]\n"
"(fields separated by \"\\x1f\").");

static PyObject *
text_rows(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *offsets, *texts;
    Py_ssize_t positions, sparse_max;
    if (!PyArg_ParseTuple(args, "OOnn:text_rows", &offsets, &texts, &positions, &sparse_max)) {
        return NULL;
    }
    return build(NULL, offsets, texts, positions, 1, sparse_max);
}

PyDoc_STRVAR(text_postings_doc,
"text_postings(offsets, texts, positions, /)\n--\n\n"
"postings() of the block whose contact at offsets[k] has search text texts[k]\n"
"(fields separated by \"\\x1f\").");

static PyObject *
text_postings(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *offsets, *texts;
    Py_ssize_t positions;
    if (!PyArg_ParseTuple(args, "OOn:text_postings", &offsets, &texts, &positions)) {
        return NULL;
    }
    return build(NULL, offsets, texts, positions, 0, 0);
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, rows_doc},
    {"postings", postings, METH_VARARGS, postings_doc},
    {"text_rows", text_rows, METH_VARARGS, text_rows_doc},
    {"text_postings", text_postings, METH_VARARGS, text_postings_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "provisioner.services.crm._postings",
    "Native keys and posting sets of an n-gram index block (see search_index).",
    0,
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__postings(void)
{
    return PyModuleDef_Init(&module_def);
}
