/* One step of the DeepSeek-Coder (LLaMA) decoder on CPU, for a batch of rows that each add one
 * token to the cache: the newest tokens of sequences being decoded, and positions of prompts
 * being fed (decode_step). The whole network in one call.
 *
 * Why in C: decoding a token reads every weight once, so its speed is bounded by memory
 * bandwidth. The libraries PyTorch calls multiply a vector by a matrix at 55-75% of the rate
 * the machine reads memory at, and the dozen small operations per layer around those products
 * (norms, rotary embedding, cache writes, attention over a short cache) cost as much again in
 * dispatch. Here each weight matrix is read once per step as one stream, for every sequence
 * of the batch, and the small operations are plain loops. The same products serve PyTorch's
 * forward pass through `panel_linear`, so a model keeps one copy of its weights.
 *
 * Layouts (checked by cpu_decode.py):
 *   weights       in panels (below): fp32, bf16, or int8 with a scale per output row; q/k/v
 *                 merged into one [q; k; v], gate/up into [gate; up]
 *   embedding     row-major [vocab, hidden], fp32 or bf16 (as the caches)
 *   norms, rope   fp32; rope tables [positions, head_dim], rotate-half layout
 *   k/v caches    [cache rows, kv_heads, max_seq, head_dim], fp32 or bf16
 * Activations stay fp32 whatever the weights. Results equal the PyTorch model's up to the
 * order of fp32 sums (and, for a bf16 model, PyTorch's roundings of activations to bf16).
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How a matrix's weights are stored (element sizes 4, 1, 2). */
enum { FP32 = 0, INT8 = 1, BF16 = 2 };

static inline int element_bytes(int format) { return format == INT8 ? 1 : format == BF16 ? 2 : 4; }

/* A weight matrix in panels (below): fp32, bf16, or int8 with one fp32 scale per output row. */
typedef struct {
    const void *panels;
    const float *scales; /* int8 only: [panels * PANEL], the weight = int8 * scale */
    int32_t format;
} Matrix;

typedef struct {
    const float *attn_norm;
    Matrix qkv, o;
    const float *mlp_norm;
    Matrix gate_up, down;
    void *k_cache, *v_cache; /* fp32, or bf16 if Model.bf16 */
} Layer;

typedef struct {
    int64_t hidden, heads, kv_heads, head_dim, intermediate, vocab, layers, max_seq;
    float eps;
    int32_t bf16; /* the embedding and the caches hold bf16 (a bf16 model); else fp32 */
    const void *embed;
    const float *norm, *rope_cos, *rope_sin;
    Matrix output;
    const Layer *layer;
} Model;

/* bf16 <-> fp32: a bf16 is the top half of an fp32. Rounding to nearest, ties to even, as
 * PyTorch converts (NaNs stay NaNs). */
static inline float from_bf16(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/* ---- work sharing ------------------------------------------------------------------------
 * A parallel loop is cut into chunks that the calling thread and up to threads - 1 helper
 * threads claim one at a time; the caller claims too, and waits only for chunks a helper has
 * started. Why not OpenMP: its loops end in a barrier that waits for every thread of the team
 * to arrive, so on cores shared with other work (a server's HTTP loop and its clients, other
 * processes) a step waits for whichever thread the operating system has not run yet; two
 * OpenMP threads made the 2-core server slower than one. Here a helper that is not running
 * only delays the chunk it holds, and one that never starts (busy cores, or after fork(),
 * which copies no threads) delays nothing. Idle helpers spin briefly (the next product of a
 * step follows within microseconds), then sleep until a loop is posted. */

typedef void (*ChunkFn)(const void *context, int64_t first, int64_t last);

#define MAX_HELPERS 255
#define IDLE_SPIN_NS 50000 /* how long an idle helper waits for work before sleeping */

static struct {
    /* The posted loop: number << 32 | chunks << 16 | next unclaimed chunk. Claiming is a
     * compare-and-swap on the whole word, so a claim can never land in another loop. */
    _Atomic uint64_t state;
    _Atomic int64_t done; /* chunks finished by helpers */
    _Atomic int sleeping; /* helpers waiting on `wake` */
    ChunkFn fn;
    const void *context;
    int64_t count, chunk;
    _Atomic int helpers_wanted; /* helpers 0 .. helpers_wanted - 1 join this loop (a hint only) */
    int helpers;        /* helpers started */
    pthread_mutex_t lock, post; /* lock: sleeping and waking; post: one loop posted at a time */
    pthread_cond_t wake;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .post = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static inline int has_unclaimed(uint64_t state) { return (state & 0xffff) < ((state >> 16) & 0xffff); }

/* Claims and runs chunks of the posted loop until none is left; returns how many it ran. */
static int64_t run_chunks(void) {
    int64_t ran = 0;
    uint64_t state = atomic_load(&pool.state);
    while (has_unclaimed(state)) {
        if (!atomic_compare_exchange_weak(&pool.state, &state, state + 1)) continue;
        int64_t first = (int64_t)(state & 0xffff) * pool.chunk;
        int64_t last = first + pool.chunk < pool.count ? first + pool.chunk : pool.count;
        pool.fn(pool.context, first, last);
        ran++;
        state = atomic_load(&pool.state);
    }
    return ran;
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *helper_main(void *argument) {
    const int index = (int)(intptr_t)argument;
    for (;;) {
        int64_t idle_since = now_ns();
        uint64_t state;
        int spins = 0;
        /* The loop's fields are read only after a successful claim, so a helper that sees a
         * loop it may not join (helpers_wanted) just waits for the next one. */
        while (!has_unclaimed(state = atomic_load(&pool.state)) ||
               index >= atomic_load_explicit(&pool.helpers_wanted, memory_order_relaxed)) {
            cpu_relax();
            if (++spins % 64 || now_ns() - idle_since < IDLE_SPIN_NS) continue;
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleeping, 1);
            uint64_t seen = state;
            while (atomic_load(&pool.state) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleeping, 1);
            pthread_mutex_unlock(&pool.lock);
            idle_since = now_ns();
        }
        int64_t ran = run_chunks();
        if (ran) atomic_fetch_add(&pool.done, ran);
    }
    return NULL;
}

/* In a child of fork(): none of the helpers exist there, and the pool's locks may have been
 * held by threads that do not either. Start over, as if no loop had run. */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.post, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.helpers = 0;
    atomic_store(&pool.sleeping, 0);
    atomic_store(&pool.done, 0);
    atomic_store(&pool.state, 0);
}

/* Starts helpers until there are `wanted` (as many as the system gives); returns how many run. */
static int start_helpers(int wanted) {
    static int fork_handled;
    if (!fork_handled) fork_handled = pthread_atfork(NULL, NULL, pool_after_fork) == 0;
    wanted = wanted < MAX_HELPERS ? wanted : MAX_HELPERS;
    while (pool.helpers < wanted) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, helper_main, (void *)(intptr_t)pool.helpers);
        pthread_attr_destroy(&attributes);
        if (failed) break;
        pool.helpers++;
    }
    return pool.helpers < wanted ? pool.helpers : wanted;
}

/* fn(context, first, last) over [0, count) in chunks of `chunk`, on up to `threads` threads
 * (the caller and threads - 1 helpers). Runs inline when one thread is asked for, the loop has
 * one chunk, or another thread of the process is running a loop. */
static void parallel_for(int threads, int64_t count, int64_t chunk, ChunkFn fn, const void *context) {
    int64_t chunks = (count + chunk - 1) / chunk;
    if (threads <= 1 || chunks <= 1 || pthread_mutex_trylock(&pool.post) != 0) {
        if (count > 0) fn(context, 0, count);
        return;
    }
    if (chunks > 0xffff) { /* the state word counts chunks in 16 bits */
        chunk = (count + 0xfffe) / 0xffff;
        chunks = (count + chunk - 1) / chunk;
    }
    int helpers = start_helpers(threads - 1);
    pool.fn = fn;
    pool.context = context;
    pool.count = count;
    pool.chunk = chunk;
    atomic_store_explicit(&pool.helpers_wanted, helpers, memory_order_relaxed);
    atomic_store(&pool.done, 0);
    uint64_t number = (atomic_load(&pool.state) >> 32) + 1;
    atomic_store(&pool.state, number << 32 | (uint64_t)chunks << 16); /* posts the loop */
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    int64_t ran = run_chunks();
    /* What is left is being run by helpers; yield now and then, in case one of them waits
     * for this core. */
    for (int spins = 1; atomic_load(&pool.done) < chunks - ran; spins++)
        if (spins % 4096) cpu_relax();
        else sched_yield();
    pthread_mutex_unlock(&pool.post);
}

/* Weights are stored in panels of PANEL output rows: panel q holds w[q*PANEL + j, i] at
 * [q][i][j] (zero rows pad the last one). A product then reads each panel front to back, one
 * stream, and multiplies each step of PANEL weights by one input value of up to 8 rows at a
 * time: no sums across vector lanes, and every weight is read once per 8 rows. */
#define PANEL 32
#define TILE_ROWS 8
typedef float v16 __attribute__((vector_size(64)));

/* Rearrange a row-major w [out, in] of `element` bytes (4: fp32, 2: bf16, 1: int8) into panels. */
typedef struct { const char *w; char *panels; int64_t out, in; int element; } Packing;

static void pack_chunk(const void *context, int64_t first, int64_t last) {
    const Packing *p = context;
    const int64_t in = p->in, element = p->element;
    for (int64_t q = first; q < last; q++)
        for (int64_t i = 0; i < in; i++)
            for (int64_t j = 0; j < PANEL; j++) {
                int64_t o = q * PANEL + j;
                char *to = p->panels + ((q * in + i) * PANEL + j) * element;
                if (o < p->out) memcpy(to, p->w + (o * in + i) * element, element);
                else memset(to, 0, element);
            }
}

void pack_panels(const void *restrict w, void *restrict panels, int64_t out, int64_t in, int element,
                 int threads) {
    Packing packing = {w, panels, out, in, element};
    parallel_for(threads, (out + PANEL - 1) / PANEL, 16, pack_chunk, &packing);
}

/* y[r, 0:width] = x[r, :] . panel for r < rows, times scales if int8 (rows and format are
 * constants where this is inlined, so each case compiles to its own loop). */
static inline __attribute__((always_inline)) void tile(int rows, int format, const void *restrict panel,
        const float *restrict scales, const float *restrict x, int64_t in, float *restrict y, int64_t out,
        int64_t width) {
    v16 acc[TILE_ROWS][2];
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = (v16){0};
    for (int64_t i = 0; i < in; i++) {
        v16 w0, w1;
        if (format == INT8) {
            /* plain loops: compilers turn them into vector sign-extensions, shifts, conversions */
            const int8_t *q = (const int8_t *)panel + i * PANEL;
            float widened[PANEL];
            for (int j = 0; j < PANEL; j++) widened[j] = q[j];
            memcpy(&w0, widened, sizeof w0);
            memcpy(&w1, widened + 16, sizeof w1);
        } else if (format == BF16) {
            const uint16_t *h = (const uint16_t *)panel + i * PANEL;
            uint32_t widened[PANEL];
            for (int j = 0; j < PANEL; j++) widened[j] = (uint32_t)h[j] << 16;
            memcpy(&w0, widened, sizeof w0);
            memcpy(&w1, widened + 16, sizeof w1);
        } else {
            memcpy(&w0, (const float *)panel + i * PANEL, sizeof w0);
            memcpy(&w1, (const float *)panel + i * PANEL + 16, sizeof w1);
        }
        for (int r = 0; r < rows; r++) {
            float xi = x[r * in + i];
            acc[r][0] += w0 * xi;
            acc[r][1] += w1 * xi;
        }
    }
    for (int r = 0; r < rows; r++) {
        float sums[PANEL];
        if (format == INT8) {
            v16 s0, s1;
            memcpy(&s0, scales, sizeof s0);
            memcpy(&s1, scales + 16, sizeof s1);
            acc[r][0] *= s0;
            acc[r][1] *= s1;
        }
        memcpy(sums, &acc[r][0], sizeof acc[r][0]);
        memcpy(sums + 16, &acc[r][1], sizeof acc[r][1]);
        memcpy(y + r * out, sums, width * sizeof(float));
    }
}

#define TILE_CASES(FORMAT)                                                   \
    switch (rows) {                                                          \
        case 1: tile(1, FORMAT, panel, scales, xb, in, yb, out, width); break; \
        case 2: tile(2, FORMAT, panel, scales, xb, in, yb, out, width); break; \
        case 3: tile(3, FORMAT, panel, scales, xb, in, yb, out, width); break; \
        case 4: tile(4, FORMAT, panel, scales, xb, in, yb, out, width); break; \
        case 5: tile(5, FORMAT, panel, scales, xb, in, yb, out, width); break; \
        case 6: tile(6, FORMAT, panel, scales, xb, in, yb, out, width); break; \
        case 7: tile(7, FORMAT, panel, scales, xb, in, yb, out, width); break; \
        default: tile(TILE_ROWS, FORMAT, panel, scales, xb, in, yb, out, width); break; \
    }

typedef struct { const Matrix *m; const float *x; float *y; int64_t batch, in, out; } Product;

/* Panels [first, last) of a product. */
static void product_chunk(const void *context, int64_t first, int64_t last) {
    const Product *p = context;
    const int64_t batch = p->batch, in = p->in, out = p->out;
    const int format = p->m->format, element = element_bytes(format);
    for (int64_t q = first; q < last; q++) {
        const void *panel = (const char *)p->m->panels + q * in * PANEL * element;
        const float *scales = format == INT8 ? p->m->scales + q * PANEL : NULL;
        int64_t width = out - q * PANEL < PANEL ? out - q * PANEL : PANEL;
        for (int64_t b = 0; b < batch; b += TILE_ROWS) {
            const float *xb = p->x + b * in;
            float *yb = p->y + b * out + q * PANEL;
            int64_t rows = batch - b < TILE_ROWS ? batch - b : TILE_ROWS;
            if (format == INT8) TILE_CASES(INT8)
            else if (format == BF16) TILE_CASES(BF16)
            else TILE_CASES(FP32)
        }
    }
}

/* Weight bytes a chunk of a product reads per 8 rows of x: about 10 microseconds of work, many
 * times the cost of claiming it, whether a chunk is bound by reading its weights (one row) or
 * by multiply-adds (8 rows: the weights read once). */
#define CHUNK_BYTES (256 * 1024)

/* y [batch, out] = x [batch, in] times the matrix m, transposed. */
static void product(const Matrix *m, const float *restrict x, float *restrict y, int64_t batch, int64_t in,
                    int64_t out, int threads) {
    if (batch <= 0) return;
    int64_t per_panel = in * PANEL * element_bytes(m->format) * ((batch + TILE_ROWS - 1) / TILE_ROWS);
    int64_t chunk = CHUNK_BYTES / per_panel > 1 ? CHUNK_BYTES / per_panel : 1;
    Product p = {m, x, y, batch, in, out};
    parallel_for(threads, (out + PANEL - 1) / PANEL, chunk, product_chunk, &p);
}

/* The product on its own, for PanelLinear layers (scales: int8 only). */
void panel_linear(const float *x, const void *panels, const float *scales, int32_t format, float *y, int64_t batch,
                  int64_t in, int64_t out, int threads) {
    Matrix m = {panels, scales, format};
    product(&m, x, y, batch, in, out, threads);
}

static void rms_norm(const float *restrict x, const float *restrict gain, float *restrict y,
                     int64_t batch, int64_t n, float eps) {
    for (int64_t b = 0; b < batch; b++) {
        const float *xb = x + b * n;
        float squares = 0;
        #pragma omp simd reduction(+ : squares)
        for (int64_t i = 0; i < n; i++) squares += xb[i] * xb[i];
        float scale = 1.0f / sqrtf(squares / (float)n + eps);
        for (int64_t i = 0; i < n; i++) y[b * n + i] = gain[i] * (xb[i] * scale);
    }
}

/* Rotate one head's vector in place by the angles of one position (rotate-half layout:
 * element j pairs with element j + dim/2). */
static void rope(float *restrict v, const float *restrict cos, const float *restrict sin, int64_t dim) {
    int64_t half = dim / 2;
    for (int64_t j = 0; j < half; j++) {
        float a = v[j], b = v[j + half];
        v[j] = a * cos[j] - b * sin[j];
        v[j + half] = b * cos[j + half] + a * sin[j + half];
    }
}

/* ---- small vector helpers ---------------------------------------------------------- */

typedef int32_t i16 __attribute__((vector_size(64)));

/* Lanes of a where pick is set (all ones), else of b. */
static inline v16 pick_lanes(i16 pick, v16 a, v16 b) {
    return (v16)(((i16)a & pick) | ((i16)b & ~pick));
}

/* The larger of a and b in each lane (b where either is NaN). */
static inline v16 larger(v16 a, v16 b) { return pick_lanes(a > b, a, b); }

/* e^x in each lane, within one unit in the last place for x in [-87, 88] (outside, x is
 * clamped to those ends; NaN stays NaN): x = n ln 2 + r with |r| <= ln 2 / 2, e^r by its
 * Taylor series to r^7, times 2^n written into the exponent bits. */
static inline v16 exp16(v16 x) {
    const v16 lo = (v16){0} - 87.0f, hi = (v16){0} + 88.0f;
    x = pick_lanes(x < lo, lo, x);
    x = pick_lanes(x > hi, hi, x);
    const float round = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    v16 n = (x * 1.44269504f + round) - round;
    v16 r = x - n * 0.693145752f - n * 1.42860677e-06f; /* ln 2 in two parts, so n ln 2 is exact */
    v16 p = (v16){0} + 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    i16 bits = (__builtin_convertvector(n, i16) + 127) << 23;
    v16 two_to_n;
    memcpy(&two_to_n, &bits, sizeof two_to_n);
    return p * two_to_n;
}

/* The first n floats at p (all 16 if n >= 16), zeros in the lanes after them. */
static inline v16 load_part(const float *p, int64_t n) {
    v16 v = {0};
    if (n >= 16) memcpy(&v, p, sizeof v);
    else for (int64_t i = 0; i < n; i++) v[i] = p[i];
    return v;
}

/* The first n lanes of v (all 16 if n >= 16) to p. */
static inline void store_part(float *p, v16 v, int64_t n) {
    if (n >= 16) memcpy(p, &v, sizeof v);
    else for (int64_t i = 0; i < n; i++) p[i] = v[i];
}

/* Lanes of two vectors picked by 16 constant indices (0-15: a, 16-31: b). */
#ifdef __clang__
#define PICK(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define PICK(a, b, ...) __builtin_shuffle(a, b, (i16){__VA_ARGS__})
#endif

/* FOLDn: a's and b's lanes in groups of 2n, each group's two halves added: the result holds
 * a's groups, then b's, each n lanes wide. */
#define FOLD8(a, b) (PICK(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) + \
                     PICK(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
#define FOLD4(a, b) (PICK(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) + \
                     PICK(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31))
#define FOLD2(a, b) (PICK(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) + \
                     PICK(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31))
#define FOLD1(a, b) (PICK(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) + \
                     PICK(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31))

/* The sums of the lanes of a[0], ..., a[15] as the lanes of one vector, in four rounds of
 * folds (45 operations for 16 sums, against about 8 per sum one vector at a time). */
static inline v16 sum_lanes16(const v16 a[16]) {
    v16 b[8], c[4], d[2];
    for (int i = 0; i < 8; i++) b[i] = FOLD8(a[2 * i], a[2 * i + 1]);
    for (int i = 0; i < 4; i++) c[i] = FOLD4(b[2 * i], b[2 * i + 1]);
    for (int i = 0; i < 2; i++) d[i] = FOLD2(c[2 * i], c[2 * i + 1]);
    return FOLD1(d[0], d[1]);
}

/* ---- attention over the cache ------------------------------------------------------- */

#define MAX_HEAD_VECTORS 16 /* head_dim up to 256 (cpu_decode.py refuses larger) */

/* n cached values (all 16 if n >= 16) from element `at` of a cache of fp32, or of bf16. */
static inline v16 load_cached(const void *cache, int64_t at, int64_t n, int bf16) {
    if (!bf16) return load_part((const float *)cache + at, n);
    const uint16_t *h = (const uint16_t *)cache + at;
    uint32_t widened[16] = {0};
    for (int64_t i = 0; i < (n < 16 ? n : 16); i++) widened[i] = (uint32_t)h[i] << 16;
    v16 v;
    memcpy(&v, widened, sizeof v);
    return v;
}

/* q . k for one query and the key at element `at` of `keys`, as a vector whose lanes sum to it. */
static inline __attribute__((always_inline)) v16 dot_lanes(const v16 *query, const void *keys, int64_t at,
                                                          int64_t dim, int bf16) {
    v16 sum = query[0] * load_cached(keys, at, dim, bf16);
    for (int64_t j = 1; j < (dim + 15) / 16; j++) sum += query[j] * load_cached(keys, at + 16 * j, dim - 16 * j, bf16);
    return sum;
}

/* A query of attention: its vector, where its output goes, and how many cached slots it sees. */
typedef struct {
    const float *q;
    float *out;
    int64_t length;
} Query;

/* A query's dim floats as vectors (the last one zero-padded). */
static inline __attribute__((always_inline)) void load_query(v16 *query, const float *q, int64_t dim) {
    for (int64_t d = 0; d < (dim + 15) / 16; d++) query[d] = load_part(q + 16 * d, dim - 16 * d);
}

#define MAX_GROUP_QUERIES 16 /* queries attending together over one key/value head */
#define KEY_BLOCK 16         /* slots scored at a time (one sum_lanes16) */
#define VALUE_BLOCK 32       /* slots whose values every query of a group sums in turn */

/* Queries that read one key/value head (fp32, or bf16), each over the cached slots
 * [0, length) it sees: the query heads of a group (grouped-query attention), consecutive
 * positions of one prompt, or both. Keys and values are read from memory once for all of
 * them, a block of slots at a time that each query then reads from L1; read once per query,
 * attention over a long prompt was bound by how fast L2 delivers them. Per query: scores 16
 * slots at a time, softmax, then the values weighted by it. scores: n rows of `stride` floats.
 * Inlined with dim and bf16 constants for the usual head sizes. */
static inline __attribute__((always_inline)) void attend(const Query *queries, int n, const void *restrict keys,
        const void *restrict values, int64_t dim, int bf16, float *restrict scores, int64_t stride) {
    const int64_t row_bytes = dim * (bf16 ? 2 : 4);
    const int64_t vectors = (dim + 15) / 16;
    const float scale = 1.0f / sqrtf((float)dim);
    int64_t longest = 0;
    for (int j = 0; j < n; j++) longest = queries[j].length > longest ? queries[j].length : longest;

    for (int64_t t = 0; t + KEY_BLOCK <= longest; t += KEY_BLOCK) {
        int first = 1; /* the first query to score this block reads its keys from memory */
        for (int j = 0; j < n; j++) {
            if (t + KEY_BLOCK > queries[j].length) continue;
            v16 query[MAX_HEAD_VECTORS], parts[KEY_BLOCK];
            load_query(query, queries[j].q, dim);
            for (int u = 0; u < KEY_BLOCK; u++) {
                parts[u] = dot_lanes(query, keys, (t + u) * dim, dim, bf16);
                /* The values of these slots are read later: ask for them now, so the two
                 * streams overlap instead of the second starting cold. */
                if (first)
                    for (int64_t line = 0; line < row_bytes; line += 64)
                        __builtin_prefetch((const char *)values + (t + u) * row_bytes + line, 0, 2);
            }
            first = 0;
            v16 s = sum_lanes16(parts) * scale;
            memcpy(scores + j * stride + t, &s, sizeof s);
        }
    }

    float totals[MAX_GROUP_QUERIES];
    for (int j = 0; j < n; j++) {
        const int64_t length = queries[j].length, whole = length / KEY_BLOCK * KEY_BLOCK;
        float *s = scores + j * stride;
        v16 query[MAX_HEAD_VECTORS];
        load_query(query, queries[j].q, dim);
        for (int64_t t = whole; t < length; t++) { /* slots after the last whole block */
            v16 part = dot_lanes(query, keys, t * dim, dim, bf16);
            float sum = 0;
            for (int u = 0; u < 16; u++) sum += part[u];
            s[t] = sum * scale;
        }
        v16 best16 = (v16){0} - INFINITY;
        for (int64_t t = 0; t < whole; t += 16) best16 = larger(load_part(s + t, 16), best16);
        float best = -INFINITY;
        for (int u = 0; u < 16; u++) best = best16[u] > best ? best16[u] : best;
        for (int64_t t = whole; t < length; t++) best = s[t] > best ? s[t] : best;
        v16 sums = {0};
        for (int64_t t = 0; t < length; t += 16) {
            int64_t k = length - t < 16 ? length - t : 16;
            v16 e = exp16(load_part(s + t, k) - best);
            for (int64_t u = k; u < 16; u++) e[u] = 0;
            sums += e;
            store_part(s + t, e, k);
        }
        totals[j] = 0;
        for (int u = 0; u < 16; u++) totals[j] += sums[u];
    }

    /* Each query's output holds its running sum between blocks (a lone query takes all slots
     * in one block). Even and odd slots in separate sums: twice the multiply-adds in flight. */
    const int64_t value_block = n > 1 ? VALUE_BLOCK : longest;
    for (int64_t t0 = 0; t0 < longest; t0 += value_block) {
        for (int j = 0; j < n; j++) {
            const int64_t end = t0 + value_block < queries[j].length ? t0 + value_block : queries[j].length;
            if (t0 >= end) continue;
            const float *p = scores + j * stride;
            float *out = queries[j].out;
            v16 even[MAX_HEAD_VECTORS], odd[MAX_HEAD_VECTORS];
            for (int64_t d = 0; d < vectors; d++) {
                even[d] = t0 ? load_part(out + 16 * d, dim - 16 * d) : (v16){0};
                odd[d] = (v16){0};
            }
            int64_t t = t0;
            for (; t + 2 <= end; t += 2)
                for (int64_t d = 0; d < vectors; d++) {
                    even[d] += p[t] * load_cached(values, t * dim + 16 * d, dim - 16 * d, bf16);
                    odd[d] += p[t + 1] * load_cached(values, (t + 1) * dim + 16 * d, dim - 16 * d, bf16);
                }
            if (t < end)
                for (int64_t d = 0; d < vectors; d++)
                    even[d] += p[t] * load_cached(values, t * dim + 16 * d, dim - 16 * d, bf16);
            for (int64_t d = 0; d < vectors; d++) store_part(out + 16 * d, even[d] + odd[d], dim - 16 * d);
        }
    }
    for (int j = 0; j < n; j++)
        for (int64_t d = 0; d < vectors; d++) {
            float *out = queries[j].out + 16 * d;
            store_part(out, load_part(out, dim - 16 * d) / totals[j], dim - 16 * d);
        }
}

#define ATTEND_SIZES(BF16)                                                          \
    switch (dim) {                                                                  \
        case 64: attend(queries, n, keys, values, 64, BF16, scores, stride); break;   \
        case 128: attend(queries, n, keys, values, 128, BF16, scores, stride); break; \
        default: attend(queries, n, keys, values, dim, BF16, scores, stride); break;  \
    }

static void attend_group(const Query *queries, int n, const void *keys, const void *values, int64_t dim,
                         int bf16, float *scores, int64_t stride) {
    if (bf16) ATTEND_SIZES(1)
    else ATTEND_SIZES(0)
}

/* A layer's attention as items that each read one key/value head once: item i is head block
 * i % head_blocks of kv head (i / head_blocks) % kv_heads, for the rows of segment
 * i / (head_blocks * kv_heads). A segment is a run of rows at consecutive positions of one
 * cache row (a piece of a prompt; a single row when decoding); its queries are the segment's
 * rows times a head block's query heads, at most MAX_GROUP_QUERIES. */
typedef struct {
    const Model *m;
    const Layer *layer;
    const float *qkv;
    float *mixed;
    const int64_t *positions, *rows;
    const int64_t *segments; /* segment s: rows [segments[s], segments[s + 1]) */
    int64_t heads_per_block, head_blocks;
    int64_t longest, most_queries;
    _Atomic int failed; /* a chunk could not allocate its scores */
} Attention;

static void attend_chunk(const void *context, int64_t first, int64_t last) {
    Attention *a = (Attention *)context;
    const Model *m = a->m;
    float *scores = malloc(a->most_queries * a->longest * sizeof(float));
    if (scores == NULL) {
        atomic_store(&a->failed, 1);
        return;
    }
    const int64_t dim = m->head_dim, heads = m->heads, kv_heads = m->kv_heads, group = heads / kv_heads;
    const int64_t q_width = heads * dim, qkv_width = (heads + 2 * kv_heads) * dim;
    for (int64_t i = first; i < last; i++) {
        const int64_t block = i % a->head_blocks, g = i / a->head_blocks % kv_heads;
        const int64_t s = i / (a->head_blocks * kv_heads);
        const int64_t first_head = g * group + block * a->heads_per_block;
        const int64_t last_head = first_head + a->heads_per_block < (g + 1) * group ? first_head + a->heads_per_block : (g + 1) * group;
        Query queries[MAX_GROUP_QUERIES];
        int n = 0;
        for (int64_t b = a->segments[s]; b < a->segments[s + 1]; b++)
            for (int64_t h = first_head; h < last_head; h++)
                queries[n++] = (Query){a->qkv + b * qkv_width + h * dim, a->mixed + b * q_width + h * dim,
                                       a->positions[b] + 1};
        const int64_t b = a->segments[s];
        size_t head = (size_t)(a->rows[b] * kv_heads + g) * m->max_seq * dim * element_bytes(m->bf16 ? BF16 : FP32);
        attend_group(queries, n, (const char *)a->layer->k_cache + head, (const char *)a->layer->v_cache + head,
                     dim, m->bf16, scores, a->longest);
    }
    free(scores);
}

/* Items per chunk of attention: enough cached keys and values that a chunk is worth claiming
 * (as CHUNK_BYTES for products). */
static int64_t attention_chunk(const Model *m, int64_t batch, const int64_t *positions) {
    int64_t cached = 0;
    for (int64_t b = 0; b < batch; b++) cached += positions[b] + 1;
    int64_t bytes_per_item = 2 * (cached / batch) * m->head_dim * element_bytes(m->bf16 ? BF16 : FP32);
    return CHUNK_BYTES / 4 / bytes_per_item > 1 ? CHUNK_BYTES / 4 / bytes_per_item : 1;
}

/* act = silu(gate) * up, elementwise over n floats. */
static void swiglu(const float *restrict gate, const float *restrict up, float *restrict act, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        v16 g = load_part(gate + i, n - i);
        store_part(act + i, g / (1.0f + exp16(-g)) * load_part(up + i, n - i), n - i);
    }
}

/* One token for each of `batch` rows: tokens[b] at position positions[b] of cache row rows[b].
 * Every row's key and value are written before any row attends, and row b attends over the
 * cached positions [0, positions[b]], so rows may be consecutive positions of one sequence (a
 * piece of its prompt) as well as the newest tokens of different sequences; no two rows may
 * share a cache row and position. Logits [outputs, vocab] are computed for rows
 * output_rows[0 .. outputs - 1] (all rows, in order, if output_rows is NULL; then outputs =
 * batch). Returns 0, or -1 if scratch memory could not be allocated, -2 if the heads are wider
 * than MAX_HEAD_VECTORS vectors, -3 if an output row lies outside the batch or there are more
 * outputs than rows (nothing is written to the caches in the last two cases). */
int decode_step(const Model *m, const int64_t *tokens, const int64_t *positions, const int64_t *rows,
                int64_t batch, const int64_t *output_rows, int64_t outputs, float *logits, int threads) {
    if (m->head_dim > 16 * MAX_HEAD_VECTORS) return -2; /* attend's vectors live on the stack */
    if (output_rows != NULL) {
        if (outputs < 0 || outputs > batch) return -3; /* the gathered rows live in [batch, hidden] */
        for (int64_t j = 0; j < outputs; j++)
            if (output_rows[j] < 0 || output_rows[j] >= batch) return -3;
    }
    const int64_t hidden = m->hidden, dim = m->head_dim, heads = m->heads, kv_heads = m->kv_heads;
    const int64_t q_width = heads * dim, qkv_width = (heads + 2 * kv_heads) * dim;
    const int64_t inter = m->intermediate;
    int64_t longest = 0;
    for (int64_t b = 0; b < batch; b++) if (positions[b] + 1 > longest) longest = positions[b] + 1;

    /* Attention items (see Attention): runs of consecutive positions of one cache row, cut so
     * that a segment's rows times a head block's heads stay within MAX_GROUP_QUERIES. */
    const int64_t group = heads / kv_heads;
    const int64_t heads_per_block = group < MAX_GROUP_QUERIES ? group : MAX_GROUP_QUERIES;
    const int64_t head_blocks = (group + heads_per_block - 1) / heads_per_block;
    const int64_t segment_rows = MAX_GROUP_QUERIES / heads_per_block;
    int64_t *segments = malloc((batch + 1) * sizeof(int64_t));
    if (segments == NULL) return -1;
    int64_t count = 0, longest_segment = 0;
    for (int64_t b = 0; b < batch; b++)
        if (b == 0 || rows[b] != rows[b - 1] || positions[b] != positions[b - 1] + 1 ||
            b - segments[count - 1] == segment_rows)
            segments[count++] = b;
    segments[count] = batch;
    for (int64_t s = 0; s < count; s++)
        if (segments[s + 1] - segments[s] > longest_segment) longest_segment = segments[s + 1] - segments[s];

    int64_t widest = hidden > q_width ? hidden : q_width;
    size_t floats = (size_t)batch * (hidden + widest + qkv_width + q_width + 2 * inter + inter);
    float *scratch = malloc(floats * sizeof(float));
    if (scratch == NULL) {
        free(segments);
        return -1;
    }
    float *x = scratch;                       /* [batch, hidden] the residual stream */
    float *normed = x + batch * hidden;       /* [batch, widest] */
    float *qkv = normed + batch * widest;     /* [batch, qkv_width] */
    float *mixed = qkv + batch * qkv_width;   /* [batch, q_width] attention output */
    float *gate_up = mixed + batch * q_width; /* [batch, 2 * inter] */
    float *act = gate_up + batch * 2 * inter; /* [batch, inter] */

    for (int64_t b = 0; b < batch; b++) {
        if (m->bf16)
            for (int64_t i = 0; i < hidden; i++) x[b * hidden + i] = from_bf16(((const uint16_t *)m->embed)[tokens[b] * hidden + i]);
        else
            memcpy(x + b * hidden, (const float *)m->embed + tokens[b] * hidden, hidden * sizeof(float));
    }

    for (int64_t l = 0; l < m->layers; l++) {
        const Layer *L = m->layer + l;
        rms_norm(x, L->attn_norm, normed, batch, hidden, m->eps);
        product(&L->qkv, normed, qkv, batch, hidden, qkv_width, threads);
        for (int64_t b = 0; b < batch; b++) {
            float *row = qkv + b * qkv_width;
            const float *cos = m->rope_cos + positions[b] * dim, *sin = m->rope_sin + positions[b] * dim;
            for (int64_t h = 0; h < heads + kv_heads; h++) rope(row + h * dim, cos, sin, dim);
            for (int64_t h = 0; h < kv_heads; h++) {
                size_t slot = ((size_t)(rows[b] * kv_heads + h) * m->max_seq + positions[b]) * dim;
                const float *k = row + q_width + h * dim, *v = row + q_width + (kv_heads + h) * dim;
                if (m->bf16) {
                    uint16_t *k_slot = (uint16_t *)L->k_cache + slot, *v_slot = (uint16_t *)L->v_cache + slot;
                    for (int64_t d = 0; d < dim; d++) {
                        k_slot[d] = to_bf16(k[d]);
                        v_slot[d] = to_bf16(v[d]);
                    }
                } else {
                    memcpy((float *)L->k_cache + slot, k, dim * sizeof(float));
                    memcpy((float *)L->v_cache + slot, v, dim * sizeof(float));
                }
            }
        }
        Attention attention = {m, L, qkv, mixed, positions, rows, segments, heads_per_block, head_blocks,
                               longest, longest_segment * heads_per_block, 0};
        parallel_for(threads, count * kv_heads * head_blocks, attention_chunk(m, batch, positions), attend_chunk,
                     &attention);
        if (atomic_load(&attention.failed)) {
            free(scratch);
            free(segments);
            return -1;
        }
        product(&L->o, mixed, normed, batch, q_width, hidden, threads);
        for (int64_t i = 0; i < batch * hidden; i++) x[i] += normed[i];

        rms_norm(x, L->mlp_norm, normed, batch, hidden, m->eps);
        product(&L->gate_up, normed, gate_up, batch, hidden, 2 * inter, threads);
        for (int64_t b = 0; b < batch; b++)
            swiglu(gate_up + b * 2 * inter, gate_up + b * 2 * inter + inter, act + b * inter, inter);
        product(&L->down, act, normed, batch, inter, hidden, threads);
        for (int64_t i = 0; i < batch * hidden; i++) x[i] += normed[i];
    }
    const float *last = x; /* the rows to output, in order */
    if (output_rows == NULL) {
        outputs = batch;
    } else {
        for (int64_t j = 0; j < outputs; j++) memcpy(normed + j * hidden, x + output_rows[j] * hidden, hidden * sizeof(float));
        last = normed;
    }
    float *final = last == x ? normed : x;
    rms_norm(last, m->norm, final, outputs, hidden, m->eps);
    product(&m->output, final, logits, outputs, hidden, m->vocab, threads);
    free(scratch);
    free(segments);
    return 0;
}

