/* shm.c - see shm.h. */
#include "shm.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/trace.h"

static_assert(sizeof(greta_shm_stage) == 64, "stage entry is one cache line");
static_assert(sizeof(greta_shm_slot) % GRETA_SHM_ALIGN == 0, "slot is whole cache lines");
static_assert(sizeof(greta_shm_header) % GRETA_SHM_ALIGN == 0, "header is whole cache lines");
static_assert(sizeof(greta_shm_topk) == 8, "top-k entry");
static_assert(sizeof(greta_shm_bias) == 8, "logit-bias entry");
/* each writer's group of slot fields starts on its own cache line */
static_assert(offsetof(greta_shm_slot, n_tokens) % GRETA_SHM_ALIGN == 0, "worker per-step group");
static_assert(offsetof(greta_shm_slot, sampled_token) % GRETA_SHM_ALIGN == 0, "sampler group");
static_assert(offsetof(greta_shm_slot, text_tokens) % GRETA_SHM_ALIGN == 0, "tokenizer group");

struct greta_shm {
    void *base;  /* mapping of the whole segment */
    size_t size;
};

static const char *const stage_names[GRETA_STAGE_COUNT] = {"tokenizer", "sampler", "gpu-worker"};

const char *greta_stage_name(int id)
{
    return id >= 0 && id < GRETA_STAGE_COUNT ? stage_names[id] : NULL;
}

int greta_stage_from_name(const char *name)
{
    for (int i = 0; name && i < GRETA_STAGE_COUNT; i++)
        if (!strcmp(name, stage_names[i]))
            return i;
    return -1;
}

const char *greta_stage_state_name(int state)
{
    switch (state) {
    case GRETA_STAGE_STOPPED: return "stopped";
    case GRETA_STAGE_STARTING: return "starting";
    case GRETA_STAGE_RUNNING: return "running";
    case GRETA_STAGE_BACKOFF: return "backoff";
    default: return "unknown";
    }
}

/* a += b, a *= b and alignment with overflow checks */
static int add_u64(uint64_t *a, uint64_t b)
{
    return __builtin_add_overflow(*a, b, a) ? -1 : 0;
}

static int align_u64(uint64_t *a, uint64_t al)
{
    uint64_t r = *a % al;
    return r ? add_u64(a, al - r) : 0;
}

int greta_shm_layout_compute(const greta_shm_geometry *g, greta_shm_layout *out, greta_error *err)
{
    memset(out, 0, sizeof *out);
    if (g->n_slots == 0 || g->n_slots > GRETA_SHM_MAX_SLOTS)
        return greta_error_set(err, GRETA_ERR_LIMIT, "segment n_slots: %u, must be 1..%d", g->n_slots,
                               GRETA_SHM_MAX_SLOTS);
    if (g->n_ctx == 0 || g->n_ctx > GRETA_SHM_MAX_CTX)
        return greta_error_set(err, GRETA_ERR_LIMIT, "segment n_ctx: %u, must be 1..%u", g->n_ctx,
                               GRETA_SHM_MAX_CTX);
    if (g->n_vocab == 0 || g->n_vocab > GRETA_SHM_MAX_VOCAB)
        return greta_error_set(err, GRETA_ERR_LIMIT, "segment n_vocab: %u, must be 1..%u", g->n_vocab,
                               GRETA_SHM_MAX_VOCAB);
    if (g->topk_max > GRETA_SHM_MAX_TOPK)
        return greta_error_set(err, GRETA_ERR_LIMIT, "segment topk_max: %u, must be 0..%d", g->topk_max,
                               GRETA_SHM_MAX_TOPK);
    uint64_t off = sizeof(greta_shm_header), t;
    int bad = 0;
    bad |= align_u64(&off, GRETA_SHM_ALIGN);
    out->stages_off = off;
    bad |= add_u64(&off, (uint64_t)GRETA_STAGE_COUNT * sizeof(greta_shm_stage));
    bad |= align_u64(&off, GRETA_SHM_ALIGN);
    out->slots_off = off;
    out->slot_size = sizeof(greta_shm_slot);
    bad |= __builtin_mul_overflow(out->slot_size, (uint64_t)g->n_slots, &t);
    bad |= add_u64(&off, t);
    bad |= align_u64(&off, GRETA_SHM_ALIGN);

    out->tokens_off = off;
    out->tokens_stride = ((uint64_t)g->n_ctx + 1) * sizeof(int32_t); /* + the token sampled at the last position */
    bad |= align_u64(&out->tokens_stride, GRETA_SHM_ALIGN);
    bad |= __builtin_mul_overflow(out->tokens_stride, (uint64_t)g->n_slots, &t);
    bad |= add_u64(&off, t);

    out->logits_off = off;
    out->logits_stride = (uint64_t)g->n_vocab * sizeof(float);
    bad |= align_u64(&out->logits_stride, GRETA_SHM_ALIGN);
    bad |= __builtin_mul_overflow(out->logits_stride, (uint64_t)g->n_slots, &t);
    bad |= add_u64(&off, t);

    out->topk_off = off;
    out->topk_stride = (uint64_t)g->topk_max * sizeof(greta_shm_topk);
    bad |= align_u64(&out->topk_stride, GRETA_SHM_ALIGN);
    bad |= __builtin_mul_overflow(out->topk_stride, (uint64_t)g->n_slots, &t);
    bad |= add_u64(&off, t);
    bad |= align_u64(&off, 4096);
    if (bad || off > GRETA_SHM_MAX_BYTES)
        return greta_error_set(err, GRETA_ERR_LIMIT,
                               "segment size for %u slots x %u ctx x %u vocab exceeds %llu bytes", g->n_slots,
                               g->n_ctx, g->n_vocab, (unsigned long long)GRETA_SHM_MAX_BYTES);
    out->total_size = off;
    return GRETA_OK;
}

int greta_shm_validate(const void *base, size_t size, greta_error *err)
{
    const greta_shm_header *h = base;
    if (size < sizeof *h)
        return greta_error_set(err, GRETA_ERR_FORMAT, "segment: %zu bytes, smaller than its %zu-byte header", size,
                               sizeof *h);
    if (memcmp(h->magic, GRETA_SHM_MAGIC, 8) != 0)
        return greta_error_set(err, GRETA_ERR_FORMAT, "segment header.magic: not \"%s\" (not a GRETA segment)",
                               GRETA_SHM_MAGIC);
    if (h->layout_version != GRETA_SHM_LAYOUT_VERSION)
        return greta_error_set(err, GRETA_ERR_UNSUPPORTED,
                               "segment header.layout_version: %u, this build uses %u (restart the instance)",
                               h->layout_version, GRETA_SHM_LAYOUT_VERSION);
    if (h->header_size != sizeof *h)
        return greta_error_set(err, GRETA_ERR_FORMAT, "segment header.header_size: %u, expected %zu",
                               h->header_size, sizeof *h);
    if (h->total_size != size)
        return greta_error_set(err, GRETA_ERR_FORMAT, "segment header.total_size: %llu, but the segment has %zu bytes",
                               (unsigned long long)h->total_size, size);
    greta_shm_geometry g = {h->n_slots, h->n_ctx, h->n_vocab, h->topk_max};
    greta_shm_layout l;
    int rc = greta_shm_layout_compute(&g, &l, err);
    if (rc < 0)
        return greta_error_prefix(err, "segment header");
#define CHECK(f)                                                                                        \
    if (h->f != l.f)                                                                                    \
        return greta_error_set(err, GRETA_ERR_FORMAT, "segment header." #f ": %llu, expected %llu",    \
                               (unsigned long long)h->f, (unsigned long long)l.f);
    CHECK(stages_off) CHECK(slots_off) CHECK(slot_size) CHECK(tokens_off) CHECK(tokens_stride)
    CHECK(logits_off) CHECK(logits_stride) CHECK(topk_off) CHECK(topk_stride) CHECK(total_size)
#undef CHECK
    if (!memchr(h->instance, 0, sizeof h->instance) || !memchr(h->model_path, 0, sizeof h->model_path) ||
        !memchr(h->backend, 0, sizeof h->backend) || !memchr(h->trace_dir, 0, sizeof h->trace_dir))
        return greta_error_set(err, GRETA_ERR_FORMAT, "segment header: a string field is not NUL-terminated");
    return GRETA_OK;
}

int greta_shm_create(const char *name, const char *instance, const greta_shm_geometry *g, greta_shm **out,
                     greta_error *err)
{
    *out = NULL;
    greta_shm_layout l;
    int rc = greta_shm_layout_compute(g, &l, err);
    if (rc < 0)
        return rc;
    if (strlen(instance) >= sizeof(((greta_shm_header *)0)->instance))
        return greta_error_set(err, GRETA_ERR_LIMIT, "segment: instance name too long");
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return greta_error_set(err, GRETA_ERR_STATE, "segment '%s': already exists", name);
        return greta_error_set(err, GRETA_ERR_IO, "segment '%s': shm_open: %s", name, strerror(errno));
    }
    fchmod(fd, 0600); /* shm_open applies the umask */
    if (ftruncate(fd, (off_t)l.total_size) != 0) {
        rc = greta_error_set(err, GRETA_ERR_IO, "segment '%s': ftruncate %llu: %s", name,
                             (unsigned long long)l.total_size, strerror(errno));
        close(fd);
        shm_unlink(name);
        return rc;
    }
    void *base = mmap(NULL, l.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        shm_unlink(name);
        return greta_error_set(err, GRETA_ERR_IO, "segment '%s': mmap: %s", name, strerror(errno));
    }
    greta_shm *s = calloc(1, sizeof *s);
    if (!s) {
        munmap(base, l.total_size);
        shm_unlink(name);
        return greta_error_set(err, GRETA_ERR_NOMEM, "segment: out of memory");
    }
    s->base = base;
    s->size = l.total_size;
    greta_shm_header *h = base; /* ftruncate zero-filled everything */
    h->layout_version = GRETA_SHM_LAYOUT_VERSION;
    h->header_size = sizeof *h;
    h->total_size = l.total_size;
    snprintf(h->instance, sizeof h->instance, "%s", instance);
    h->n_slots = g->n_slots;
    h->n_ctx = g->n_ctx;
    h->n_vocab = g->n_vocab;
    h->topk_max = g->topk_max;
    h->stages_off = l.stages_off;
    h->slots_off = l.slots_off;
    h->slot_size = l.slot_size;
    h->tokens_off = l.tokens_off;
    h->tokens_stride = l.tokens_stride;
    h->logits_off = l.logits_off;
    h->logits_stride = l.logits_stride;
    h->topk_off = l.topk_off;
    h->topk_stride = l.topk_stride;
    for (uint32_t i = 0; i < g->n_slots; i++)
        atomic_store(&greta_shm_slot_at(s, i)->sampled_len, UINT32_MAX);
    greta_shm_take_ownership(s);
    atomic_thread_fence(memory_order_release);
    memcpy(h->magic, GRETA_SHM_MAGIC, 8); /* last: a half-made segment has no magic */
    *out = s;
    return GRETA_OK;
}

int greta_shm_attach(const char *name, greta_shm **out, greta_error *err)
{
    *out = NULL;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return greta_error_set(err, GRETA_ERR_NOT_FOUND, "segment '%s': does not exist", name);
        return greta_error_set(err, GRETA_ERR_IO, "segment '%s': shm_open: %s", name, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return greta_error_set(err, GRETA_ERR_IO, "segment '%s': fstat: %s", name, strerror(errno));
    }
    size_t size = (size_t)st.st_size;
    if (size < sizeof(greta_shm_header)) {
        close(fd);
        return greta_error_set(err, GRETA_ERR_FORMAT, "segment '%s': %zu bytes, smaller than its %zu-byte header",
                               name, size, sizeof(greta_shm_header));
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        return greta_error_set(err, GRETA_ERR_IO, "segment '%s': mmap: %s", name, strerror(errno));
    int rc = greta_shm_validate(base, size, err);
    if (rc < 0) {
        munmap(base, size);
        return greta_error_prefix(err, "segment '%s'", name);
    }
    greta_shm *s = calloc(1, sizeof *s);
    if (!s) {
        munmap(base, size);
        return greta_error_set(err, GRETA_ERR_NOMEM, "segment: out of memory");
    }
    s->base = base;
    s->size = size;
    *out = s;
    return GRETA_OK;
}

void greta_shm_detach(greta_shm **shm)
{
    if (shm && *shm) {
        munmap((*shm)->base, (*shm)->size);
        free(*shm);
        *shm = NULL;
    }
}

int greta_shm_unlink(const char *name, greta_error *err)
{
    if (shm_unlink(name) != 0 && errno != ENOENT)
        return greta_error_set(err, GRETA_ERR_IO, "segment '%s': shm_unlink: %s", name, strerror(errno));
    return GRETA_OK;
}

greta_shm_header *greta_shm_hdr(greta_shm *shm)
{
    return shm->base;
}

greta_shm_stage *greta_shm_stage_at(greta_shm *shm, int stage)
{
    assert(stage >= 0 && stage < GRETA_STAGE_COUNT);
    return (greta_shm_stage *)((char *)shm->base + greta_shm_hdr(shm)->stages_off) + stage;
}

greta_shm_slot *greta_shm_slot_at(greta_shm *shm, uint32_t slot)
{
    greta_shm_header *h = shm->base;
    assert(slot < h->n_slots);
    return (greta_shm_slot *)((char *)shm->base + h->slots_off + (uint64_t)slot * h->slot_size);
}

int32_t *greta_shm_tokens(greta_shm *shm, uint32_t slot)
{
    greta_shm_header *h = shm->base;
    assert(slot < h->n_slots);
    return (int32_t *)((char *)shm->base + h->tokens_off + (uint64_t)slot * h->tokens_stride);
}

float *greta_shm_logits(greta_shm *shm, uint32_t slot)
{
    greta_shm_header *h = shm->base;
    assert(slot < h->n_slots);
    return (float *)((char *)shm->base + h->logits_off + (uint64_t)slot * h->logits_stride);
}

greta_shm_topk *greta_shm_topk_row(greta_shm *shm, uint32_t slot)
{
    greta_shm_header *h = shm->base;
    assert(slot < h->n_slots);
    return (greta_shm_topk *)((char *)shm->base + h->topk_off + (uint64_t)slot * h->topk_stride);
}

/* The fields of /proc/PID/stat after the command name (from the state on)
 * into buf; NULL when pid does not exist. The command name may contain
 * spaces and ')': the fields follow the last ')'. */
static const char *proc_stat_fields(int pid, char *buf, size_t size)
{
    if (pid <= 0)
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p ? p + 1 : NULL;
}

uint64_t greta_proc_start_time(int pid)
{
    char buf[1024];
    const char *p = proc_stat_fields(pid, buf, sizeof buf);
    if (!p)
        return 0;
    char state = 0;
    unsigned long long start = 0;
    /* fields 3 (state) .. 22 (starttime) */
    if (sscanf(p, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state,
               &start) != 2)
        return 0;
    if (state == 'Z' || state == 'X')
        return 0;
    return start ? start : 1;
}

char greta_proc_state(int pid)
{
    char buf[1024];
    const char *p = proc_stat_fields(pid, buf, sizeof buf);
    return p && p[0] == ' ' ? p[1] : 0;
}

int greta_proc_alive(int pid, uint64_t start_time)
{
    uint64_t t = greta_proc_start_time(pid);
    if (t == 0)
        return 0;
    return start_time == 0 || t == start_time;
}

void greta_shm_take_ownership(greta_shm *shm)
{
    greta_shm_header *h = shm->base;
    int pid = (int)getpid();
    atomic_store(&h->owner_start, greta_proc_start_time(pid));
    atomic_store(&h->owner_pid, pid);
    atomic_fetch_add(&h->generation, 1);
}

int greta_shm_owner_alive(greta_shm *shm)
{
    greta_shm_header *h = shm->base;
    return greta_proc_alive(atomic_load(&h->owner_pid), atomic_load(&h->owner_start));
}

int greta_shm_is_stale(greta_shm *shm)
{
    if (greta_shm_owner_alive(shm))
        return 0;
    for (int i = 0; i < GRETA_STAGE_COUNT; i++) {
        greta_shm_stage *st = greta_shm_stage_at(shm, i);
        if (greta_proc_alive(atomic_load(&st->pid), atomic_load(&st->start_time)))
            return 0;
    }
    return 1;
}

/* ---- doorbells ------------------------------------------------------------------ */

static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "a doorbell is a plain 32-bit futex word");

void greta_shm_ring(_Atomic uint32_t *bell, uint32_t value)
{
    atomic_store_explicit(bell, value, memory_order_release);
    /* not FUTEX_PRIVATE: the word lives in a mapping other processes share */
    syscall(SYS_futex, (uint32_t *)bell, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static int64_t shm_now_us(void)
{
    return (int64_t)(greta_trace_now_ns() / 1000);
}

int greta_shm_spin_budget(int64_t since_us, int64_t interval_us)
{
    if (interval_us <= 0 || interval_us > GRETA_SHM_SPIN_STREAM_US || since_us < 0 || since_us >= 2 * interval_us)
        return GRETA_SHM_SPIN_US;
    const int64_t left = 2 * interval_us - since_us;
    return left > GRETA_SHM_SPIN_US ? (int)left : GRETA_SHM_SPIN_US;
}

int greta_shm_wait(_Atomic uint32_t *bell, uint32_t seen, int timeout_us)
{
    return greta_shm_wait_spin(bell, seen, GRETA_SHM_SPIN_US, timeout_us);
}

int greta_shm_wait_spin(_Atomic uint32_t *bell, uint32_t seen, int spin_us, int timeout_us)
{
    if (atomic_load_explicit(bell, memory_order_acquire) != seen)
        return 1;
    /* Spin first: a bell rung within the spin is seen without a futex
     * sleep and wake-up, which cost tens of microseconds per hand-off (the
     * gpu-worker waits GRETA_SHM_SPIN_US for the sampler every step; the
     * sampler spins through a fast decode step, greta_shm_spin_budget). */
    const int spin = timeout_us < spin_us ? timeout_us : spin_us;
    if (spin > 0) {
        const int64_t end = shm_now_us() + spin;
        do {
            for (int i = 0; i < 32; i++) {
                if (atomic_load_explicit(bell, memory_order_acquire) != seen)
                    return 1;
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
        } while (shm_now_us() < end);
        timeout_us -= spin;
    }
    if (timeout_us > 0) {
        struct timespec ts = {timeout_us / 1000000, (long)(timeout_us % 1000000) * 1000};
        syscall(SYS_futex, (uint32_t *)bell, FUTEX_WAIT, seen, &ts, NULL, 0); /* relative, CLOCK_MONOTONIC */
    }
    return atomic_load_explicit(bell, memory_order_acquire) != seen;
}
