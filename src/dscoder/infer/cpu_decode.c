/* One decoding step of the DeepSeek-Coder (LLaMA) decoder on CPU, fp32, for a batch of
 * sequences that each add one token: the whole network in one call.
 *
 * Why in C: decoding a token reads every weight once, so its speed is bounded by memory
 * bandwidth. The libraries PyTorch calls multiply a vector by a matrix at 55-75% of the rate
 * the machine reads memory at, and the dozen small operations per layer around those products
 * (norms, rotary embedding, cache writes, attention over a short cache) cost as much again in
 * dispatch. Here each weight matrix is read once per step as one stream, for every sequence
 * of the batch, and the small operations are plain loops. The same products serve prompts
 * (many rows) through `panel_linear`, so a model keeps one copy of its weights.
 *
 * Layouts (checked by cpu_decode.py):
 *   weights       in panels (below), fp32 or int8 with a scale per output row; q/k/v merged
 *                 into one [q; k; v], gate/up into [gate; up]
 *   embedding     row-major [vocab, hidden]
 *   rope tables   [positions, head_dim], rotate-half layout
 *   k/v caches    [cache rows, kv_heads, max_seq, head_dim]
 * Activations stay fp32. Results equal the PyTorch model's up to the order of fp32 sums.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A weight matrix in panels (below): fp32, or int8 with one fp32 scale per output row. */
typedef struct {
    const void *panels;
    const float *scales; /* NULL for fp32 panels; else [panels * PANEL], the weight = int8 * scale */
} Matrix;

typedef struct {
    const float *attn_norm;
    Matrix qkv, o;
    const float *mlp_norm;
    Matrix gate_up, down;
    float *k_cache, *v_cache;
} Layer;

typedef struct {
    int64_t hidden, heads, kv_heads, head_dim, intermediate, vocab, layers, max_seq;
    float eps;
    const float *embed, *norm, *rope_cos, *rope_sin;
    Matrix output;
    const Layer *layer;
} Model;

/* Weights are stored in panels of PANEL output rows: panel q holds w[q*PANEL + j, i] at
 * [q][i][j] (zero rows pad the last one). A product then reads each panel front to back, one
 * stream, and multiplies each step of PANEL weights by one input value of up to 8 rows at a
 * time: no sums across vector lanes, and every weight is read once per 8 rows. */
#define PANEL 32
#define TILE_ROWS 8
typedef float v16 __attribute__((vector_size(64)));

/* Rearrange a row-major w [out, in] of `element` bytes (4: fp32, 1: int8) into panels. */
void pack_panels(const void *restrict w, void *restrict panels, int64_t out, int64_t in, int element,
                 int threads) {
    int64_t count = (out + PANEL - 1) / PANEL;
    const char *src = w;
    char *dst = panels;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t q = 0; q < count; q++)
        for (int64_t i = 0; i < in; i++)
            for (int64_t j = 0; j < PANEL; j++) {
                int64_t o = q * PANEL + j;
                char *to = dst + ((q * in + i) * PANEL + j) * element;
                if (o < out) memcpy(to, src + (o * in + i) * element, element);
                else memset(to, 0, element);
            }
}

/* y[r, 0:width] = x[r, :] . panel for r < rows, times scales if int8 (rows and int8 are
 * constants where this is inlined, so each case compiles to its own loop). */
static inline __attribute__((always_inline)) void tile(int rows, int int8, const void *restrict panel,
        const float *restrict scales, const float *restrict x, int64_t in, float *restrict y, int64_t out,
        int64_t width) {
    v16 acc[TILE_ROWS][2];
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = (v16){0};
    for (int64_t i = 0; i < in; i++) {
        v16 w0, w1;
        if (int8) {
            /* a plain loop: compilers turn it into vector sign-extensions and conversions */
            const int8_t *q = (const int8_t *)panel + i * PANEL;
            float widened[PANEL];
            for (int j = 0; j < PANEL; j++) widened[j] = q[j];
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
        if (int8) {
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

#define TILE_CASES(INT8)                                                   \
    switch (rows) {                                                        \
        case 1: tile(1, INT8, panel, scales, xb, in, yb, out, width); break; \
        case 2: tile(2, INT8, panel, scales, xb, in, yb, out, width); break; \
        case 3: tile(3, INT8, panel, scales, xb, in, yb, out, width); break; \
        case 4: tile(4, INT8, panel, scales, xb, in, yb, out, width); break; \
        case 5: tile(5, INT8, panel, scales, xb, in, yb, out, width); break; \
        case 6: tile(6, INT8, panel, scales, xb, in, yb, out, width); break; \
        case 7: tile(7, INT8, panel, scales, xb, in, yb, out, width); break; \
        default: tile(TILE_ROWS, INT8, panel, scales, xb, in, yb, out, width); break; \
    }

/* y [batch, out] = x [batch, in] times the matrix m, transposed. */
static void product(const Matrix *m, const float *restrict x, float *restrict y, int64_t batch, int64_t in,
                    int64_t out, int threads) {
    int64_t count = (out + PANEL - 1) / PANEL;
    int int8 = m->scales != NULL;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t q = 0; q < count; q++) {
        const void *panel = (const char *)m->panels + q * in * PANEL * (int8 ? 1 : 4);
        const float *scales = int8 ? m->scales + q * PANEL : NULL;
        int64_t width = out - q * PANEL < PANEL ? out - q * PANEL : PANEL;
        for (int64_t b = 0; b < batch; b += TILE_ROWS) {
            const float *xb = x + b * in;
            float *yb = y + b * out + q * PANEL;
            int64_t rows = batch - b < TILE_ROWS ? batch - b : TILE_ROWS;
            if (int8) TILE_CASES(1) else TILE_CASES(0)
        }
    }
}

/* The product on its own, for PanelLinear layers: scales NULL for fp32 panels. */
void panel_linear(const float *x, const void *panels, const float *scales, float *y, int64_t batch, int64_t in,
                  int64_t out, int threads) {
    Matrix m = {panels, scales};
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

/* One query head over the cached slots [0, length) of its key/value head. */
static void attend(const float *restrict q, const float *restrict keys, const float *restrict values,
                   int64_t length, int64_t dim, float *restrict scores, float *restrict out) {
    float scale = 1.0f / sqrtf((float)dim), best = -INFINITY;
    for (int64_t t = 0; t < length; t++) {
        const float *k = keys + t * dim;
        float s = 0;
        #pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < dim; d++) s += q[d] * k[d];
        scores[t] = s * scale;
        if (scores[t] > best) best = scores[t];
    }
    float total = 0;
    for (int64_t t = 0; t < length; t++) {
        scores[t] = expf(scores[t] - best);
        total += scores[t];
    }
    for (int64_t d = 0; d < dim; d++) out[d] = 0;
    for (int64_t t = 0; t < length; t++) {
        const float *v = values + t * dim;
        float p = scores[t] / total;
        #pragma omp simd
        for (int64_t d = 0; d < dim; d++) out[d] += p * v[d];
    }
}

/* Decode one token for each of `batch` sequences: tokens[b] is the newest token of the
 * sequence in cache row rows[b], at position positions[b]; its key and value are written
 * there, and logits [batch, vocab] are filled. Returns 0, or -1 if scratch memory could not
 * be allocated (nothing is written to the caches then). */
int decode_step(const Model *m, const int64_t *tokens, const int64_t *positions, const int64_t *rows,
                int64_t batch, float *logits, int threads) {
    const int64_t hidden = m->hidden, dim = m->head_dim, heads = m->heads, kv_heads = m->kv_heads;
    const int64_t q_width = heads * dim, qkv_width = (heads + 2 * kv_heads) * dim;
    const int64_t inter = m->intermediate, group = heads / kv_heads;
    int64_t longest = 0;
    for (int64_t b = 0; b < batch; b++) if (positions[b] + 1 > longest) longest = positions[b] + 1;

    int64_t widest = hidden > q_width ? hidden : q_width;
    size_t floats = (size_t)batch * (hidden + widest + qkv_width + q_width + 2 * inter + inter)
                    + (size_t)batch * heads * longest;
    float *scratch = malloc(floats * sizeof(float));
    if (scratch == NULL) return -1;
    float *x = scratch;                       /* [batch, hidden] the residual stream */
    float *normed = x + batch * hidden;       /* [batch, widest] */
    float *qkv = normed + batch * widest;     /* [batch, qkv_width] */
    float *mixed = qkv + batch * qkv_width;   /* [batch, q_width] attention output */
    float *gate_up = mixed + batch * q_width; /* [batch, 2 * inter] */
    float *act = gate_up + batch * 2 * inter; /* [batch, inter] */
    float *scores = act + batch * inter;      /* [batch * heads, longest] */

    for (int64_t b = 0; b < batch; b++)
        memcpy(x + b * hidden, m->embed + tokens[b] * hidden, hidden * sizeof(float));

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
                memcpy(L->k_cache + slot, row + q_width + h * dim, dim * sizeof(float));
                memcpy(L->v_cache + slot, row + q_width + (kv_heads + h) * dim, dim * sizeof(float));
            }
        }
        #pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t h = 0; h < heads; h++) {
                size_t head = (size_t)(rows[b] * kv_heads + h / group) * m->max_seq * dim;
                attend(qkv + b * qkv_width + h * dim, L->k_cache + head, L->v_cache + head,
                       positions[b] + 1, dim, scores + (b * heads + h) * longest, mixed + b * q_width + h * dim);
            }
        }
        product(&L->o, mixed, normed, batch, q_width, hidden, threads);
        for (int64_t i = 0; i < batch * hidden; i++) x[i] += normed[i];

        rms_norm(x, L->mlp_norm, normed, batch, hidden, m->eps);
        product(&L->gate_up, normed, gate_up, batch, hidden, 2 * inter, threads);
        for (int64_t b = 0; b < batch; b++) {
            const float *gate = gate_up + b * 2 * inter, *up = gate + inter;
            for (int64_t i = 0; i < inter; i++)
                act[b * inter + i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
        }
        product(&L->down, act, normed, batch, inter, hidden, threads);
        for (int64_t i = 0; i < batch * hidden; i++) x[i] += normed[i];
    }
    rms_norm(x, m->norm, normed, batch, hidden, m->eps);
    product(&m->output, normed, logits, batch, hidden, m->vocab, threads);
    free(scratch);
    return 0;
}

