/* shm.h - the per-instance shared-memory segment.
 *
 * One POSIX segment per instance (name from greta_shm_name(), mode 0600),
 * created by the supervisor. It holds everything a restarted stage needs to
 * continue: the stage table, the slot table (one slot per sequence: state,
 * token history, sampling parameters, sampler and tokenizer progress) and the
 * logits the worker hands to the sampler. Offsets, never pointers; every
 * region starts on a 64-byte cache line.
 *
 * Layout (layout version GRETA_SHM_LAYOUT_VERSION; all offsets from byte 0):
 *
 *   [0, header_size)            greta_shm_header
 *   [stages_off, +stage_count*64)   greta_shm_stage[GRETA_STAGE_COUNT]
 *   [slots_off, +n_slots*slot_size) greta_shm_slot[n_slots]
 *   [tokens_off, +n_slots*tokens_stride)  int32 token history [slot][n_ctx + 1]
 *                                  (a full context and the token sampled from
 *                                  its last position, as in process)
 *   [logits_off, +n_slots*logits_stride)  fp32 logits [slot][n_vocab]
 *   [topk_off, +n_slots*topk_stride)      greta_shm_topk [slot][topk_max]
 *   total_size = end of the last region, rounded up to 4096
 *
 * Who writes what (everyone else only reads):
 *   header: the supervisor at creation (magic, version, sizes, geometry,
 *           model/backend/trace settings); generation and owner_* at creation
 *           and at each adoption; step_ready, ready_bell: the worker;
 *           step_done, done_bell: the sampler.
 *   stage table: the supervisor.
 *   slot: see the comments on greta_shm_slot (worker / sampler / tokenizer).
 *   token history: the worker (prompt at submit, one token per step).
 *   logits, top-k: the worker; read by the sampler for the slots of a step.
 *
 * Publication order: a writer fills data first and then stores the counter
 * that makes it visible with release semantics (state, n_tokens, step_ready,
 * step_done, sampled_len, text_tokens); readers load the counter with acquire.
 *
 * The per-step hand-off wakes the peer through a doorbell: after step_ready
 * (step_done) the worker (sampler) stores its low 32 bits into ready_bell
 * (done_bell) and wakes every process waiting on that word (a Linux futex on
 * the shared mapping), so a step costs one wake-up each way instead of a
 * ZeroMQ message through two I/O threads. Waiters always use a timeout and
 * re-check the counters, so a lost wake-up (a peer killed in between) costs
 * one timeout, never a hang.
 *
 * A segment whose magic, layout version, header size, total size or geometry
 * does not match what this build computes is refused with an error naming
 * the field; greta_shm_validate() also checks untrusted headers in tests.
 */
#ifndef GRETA_PROTO_SHM_H
#define GRETA_PROTO_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define GRETA_SHM_MAGIC "GRETASHM" /* 8 bytes, no NUL */
#define GRETA_SHM_LAYOUT_VERSION 3u /* 2: penalties and logit bias in the slot; 3: n_ctx + 1 tokens a slot */
#define GRETA_SHM_ALIGN 64

/* Limits on the geometry (checked before anything is created). */
#define GRETA_SHM_MAX_SLOTS 256
#define GRETA_SHM_MAX_CTX (1u << 20)
#define GRETA_SHM_MAX_VOCAB (1u << 22)
#define GRETA_SHM_MAX_TOPK 256
#define GRETA_SHM_MAX_BYTES ((uint64_t)4 << 30)

#define GRETA_SHM_STOP_MAX 4      /* stop strings per slot */
#define GRETA_SHM_STOP_LEN 64     /* bytes per stop string, NUL included */
#define GRETA_SHM_CLIENT_LEN 32   /* client routing id, bytes */
#define GRETA_SHM_PATH_LEN 256
#define GRETA_SHM_MAX_BIAS 64     /* logit-bias entries per slot (= GRETA_SAMPLER_MAX_BIAS) */

/* Stages the supervisor runs, index into the stage table. */
typedef enum greta_stage_id {
    GRETA_STAGE_TOKENIZER = 0,
    GRETA_STAGE_SAMPLER = 1,
    GRETA_STAGE_WORKER = 2,
    GRETA_STAGE_COUNT = 3,
} greta_stage_id;

/* "tokenizer", "sampler", "gpu-worker"; NULL for an invalid id. */
const char *greta_stage_name(int id);
/* Index of a stage name, or -1. */
int greta_stage_from_name(const char *name);

typedef enum greta_stage_state {
    GRETA_STAGE_STOPPED = 0,  /* not started or shut down */
    GRETA_STAGE_STARTING = 1, /* started, no Hello yet */
    GRETA_STAGE_RUNNING = 2,  /* Hello received, heartbeats arriving */
    GRETA_STAGE_BACKOFF = 3,  /* died; waiting before the next start */
} greta_stage_state;

const char *greta_stage_state_name(int state);

/* Stage table entry (supervisor writes all fields). 64 bytes. */
typedef struct greta_shm_stage {
    _Atomic int32_t pid;          /* current process, 0 when none */
    _Atomic uint32_t state;       /* greta_stage_state */
    _Atomic uint64_t start_time;  /* the process's start time (/proc stat field 22), detects pid reuse */
    _Atomic uint32_t restarts;    /* restarts since `greta up` */
    uint32_t _pad0;
    _Atomic uint64_t heartbeat_ms;/* CLOCK_MONOTONIC ms of the last Hello/Heartbeat */
    uint8_t _pad[32];
} greta_shm_stage;

typedef enum greta_slot_state {
    GRETA_SLOT_FREE = 0,
    GRETA_SLOT_ACTIVE = 1,   /* generating */
    GRETA_SLOT_FINISHED = 2, /* generation over (finish_reason set), text may still be flushing */
} greta_slot_state;

/* Logits hand-off modes for one step (worker writes logits_mode). */
typedef enum greta_logits_mode {
    GRETA_LOGITS_FULL = 0, /* logits row [n_vocab] */
    GRETA_LOGITS_TOPK = 1, /* top-k entries + log-sum-exp of the whole row */
    GRETA_LOGITS_TOP1 = 2, /* top-1 entry only (greedy without penalties) */
} greta_logits_mode;

/* One entry of a top-k row, best first (higher logit; equal logits: lower id). */
typedef struct greta_shm_topk {
    int32_t id;
    float logit;
} greta_shm_topk;

/* One logit-bias entry of a slot (same layout as greta_logit_bias). */
typedef struct greta_shm_bias {
    int32_t token;
    float bias; /* finite, or -inf */
} greta_shm_bias;

/* One sequence. The slot's fields are grouped by writer. */
typedef struct greta_shm_slot {
    /* --- worker: set at Submit, before state goes ACTIVE (release) --- */
    _Atomic uint32_t state;        /* greta_slot_state */
    _Atomic uint32_t generation;   /* +1 each time the slot is (re)used */
    _Atomic uint64_t request_id;   /* also the trace id */
    uint8_t client[GRETA_SHM_CLIENT_LEN]; /* routing id of the client */
    uint32_t client_len;
    uint32_t prompt_len;           /* tokens of the prompt at the start of history */
    uint32_t max_tokens;           /* tokens to generate */
    /* sampling parameters (as in greta.SamplingParams) */
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    uint32_t n_stop;                                   /* stop strings in use */
    uint64_t seed;
    char stop[GRETA_SHM_STOP_MAX][GRETA_SHM_STOP_LEN]; /* NUL-terminated */
    float frequency_penalty;
    float presence_penalty;
    uint32_t n_bias;                                   /* used entries of bias[] */
    uint32_t _r0;
    greta_shm_bias bias[GRETA_SHM_MAX_BIAS];
    uint8_t _pad0[16];
    /* --- worker: per step --- */
    _Atomic uint32_t n_tokens;     /* history length (prompt + generated); published after the token */
    _Atomic uint32_t finish_reason;/* greta.FinishReason once state is FINISHED */
    _Atomic uint32_t batch_size;   /* sequences in the step that produced the last token */
    _Atomic uint32_t logits_mode;  /* greta_logits_mode of the current step */
    _Atomic uint64_t logits_step;  /* step whose logits (or top-k) are in this slot's row; stored last */
    _Atomic uint32_t n_topk;       /* entries in the top-k row (TOPK/TOP1 modes), <= topk_max */
    float topk_lse;                /* log-sum-exp of the whole logits row (TOPK/TOP1 modes) */
    _Atomic uint64_t last_step;    /* step that produced the last token */
    uint8_t _pad1[24];
    /* --- sampler --- */
    _Atomic int32_t sampled_token; /* token chosen for position sampled_len */
    _Atomic uint32_t sampled_len;  /* history length the token was chosen for (+1: none yet) */
    _Atomic uint64_t rng_counter;  /* RNG counter used for the last draw */
    _Atomic uint64_t sampled_step; /* step of the last draw */
    uint8_t _pad2[40];
    /* --- tokenizer --- */
    _Atomic uint32_t text_tokens;  /* generated tokens the detokenizer has processed */
    _Atomic uint32_t stop_hit;     /* 1: a stop string matched; the worker finishes with FINISH_STOP */
    _Atomic uint64_t text_offset;  /* bytes of text emitted to the client so far */
    _Atomic uint32_t delivered;    /* 1: Finished was sent */
    uint8_t _pad3[44];
} greta_shm_slot;

/* The segment header (supervisor writes, see the top of this file). */
typedef struct greta_shm_header {
    uint8_t magic[8];              /* GRETA_SHM_MAGIC */
    uint32_t layout_version;       /* GRETA_SHM_LAYOUT_VERSION */
    uint32_t header_size;          /* sizeof(greta_shm_header) */
    uint64_t total_size;           /* bytes of the whole segment */
    _Atomic uint64_t generation;   /* +1 at creation and at each adoption by a new supervisor */
    _Atomic int32_t owner_pid;     /* supervisor process */
    uint32_t _pad0;
    _Atomic uint64_t owner_start;  /* supervisor start time (/proc stat field 22) */
    char instance[40];             /* instance name, NUL-terminated */
    /* geometry */
    uint32_t n_slots;              /* sequences */
    uint32_t n_ctx;                /* context positions per slot (token history: n_ctx + 1) */
    uint32_t n_vocab;              /* logits per row */
    uint32_t topk_max;             /* entries per top-k row */
    /* region offsets and strides, bytes */
    uint64_t stages_off;
    uint64_t slots_off, slot_size;
    uint64_t tokens_off, tokens_stride;
    uint64_t logits_off, logits_stride;
    uint64_t topk_off, topk_stride;
    /* the per-step hand-off */
    _Atomic uint64_t step_ready;   /* worker: last step whose logits are written */
    _Atomic uint64_t step_done;    /* sampler: last step whose tokens are written */
    /* how the stages are run (so an adopting supervisor can restart them) */
    char model_path[GRETA_SHM_PATH_LEN];
    char backend[16];              /* "cpu" or "gpu" */
    char trace_dir[GRETA_SHM_PATH_LEN]; /* empty: tracing off */
    int32_t n_threads;             /* worker CPU threads (0: all it may use) */
    /* doorbells (futex words, see greta_shm_ring): the low 32 bits of
     * step_ready / step_done, stored after them */
    _Atomic uint32_t ready_bell;   /* worker */
    _Atomic uint32_t done_bell;    /* sampler */
    uint8_t _pad[36];
} greta_shm_header;

/* What the supervisor asks for. */
typedef struct greta_shm_geometry {
    uint32_t n_slots, n_ctx, n_vocab, topk_max;
} greta_shm_geometry;

/* Computed layout (offsets as stored in the header). */
typedef struct greta_shm_layout {
    uint64_t stages_off, slots_off, slot_size, tokens_off, tokens_stride;
    uint64_t logits_off, logits_stride, topk_off, topk_stride, total_size;
} greta_shm_layout;

typedef struct greta_shm greta_shm; /* this process's mapping (private) */

/* Offsets and total size, with limits and overflow checks. */
int greta_shm_layout_compute(const greta_shm_geometry *g, greta_shm_layout *out, greta_error *err);

/* Checks an untrusted header in `size` mapped bytes: magic, version, header
 * size, total size == size, geometry limits and offsets == computed layout. */
int greta_shm_validate(const void *base, size_t size, greta_error *err);

/* Creates the segment (exclusively: GRETA_ERR_STATE when it exists) and
 * initialises the header; owner = this process, generation 1. */
int greta_shm_create(const char *name, const char *instance, const greta_shm_geometry *g,
                     greta_shm **out, greta_error *err);
/* Maps an existing segment after greta_shm_validate(). GRETA_ERR_NOT_FOUND
 * when it does not exist. */
int greta_shm_attach(const char *name, greta_shm **out, greta_error *err);
void greta_shm_detach(greta_shm **shm);
/* shm_unlink; 0 also when it did not exist. */
int greta_shm_unlink(const char *name, greta_error *err);

greta_shm_header *greta_shm_hdr(greta_shm *shm);
greta_shm_stage *greta_shm_stage_at(greta_shm *shm, int stage);
greta_shm_slot *greta_shm_slot_at(greta_shm *shm, uint32_t slot);
int32_t *greta_shm_tokens(greta_shm *shm, uint32_t slot);     /* [n_ctx + 1] */
float *greta_shm_logits(greta_shm *shm, uint32_t slot);       /* [n_vocab] */
greta_shm_topk *greta_shm_topk_row(greta_shm *shm, uint32_t slot); /* [topk_max] */

/* Process start time (clock ticks since boot, /proc/<pid>/stat field 22);
 * 0 when the process does not exist. */
uint64_t greta_proc_start_time(int pid);
/* The state letter of process pid (/proc/PID/stat field 3: R, S, T for
 * stopped, Z...); 0 when the process does not exist. */
char greta_proc_state(int pid);
/* 1 when pid runs, is not a zombie, and (if start_time != 0) started then. */
int greta_proc_alive(int pid, uint64_t start_time);

/* Stores value into the doorbell (release) and wakes its waiters. */
void greta_shm_ring(_Atomic uint32_t *bell, uint32_t value);
/* Waits until the doorbell holds something other than `seen` or timeout_us
 * passes (a spurious early return is possible: callers re-check what they
 * wait for). 1 when the value differs now, 0 otherwise. The first
 * GRETA_SHM_SPIN_US of the wait (at most timeout_us) spin on the bell; the
 * rest sleep on it (futex). */
#define GRETA_SHM_SPIN_US 50
int greta_shm_wait(_Atomic uint32_t *bell, uint32_t seen, int timeout_us);
/* greta_shm_wait with the first spin_us (at most timeout_us) spinning. */
int greta_shm_wait_spin(_Atomic uint32_t *bell, uint32_t seen, int spin_us, int timeout_us);

/* How long a waiter that expects the next ring about every interval_us
 * (the last two rings' distance; 0: unknown) and saw the last one
 * since_us ago should spin before it sleeps: up to twice the interval
 * after the last ring when the interval is at most GRETA_SHM_SPIN_STREAM_US
 * (a GPU decode stream: a futex wake-up costs tens of microseconds a
 * token), else GRETA_SHM_SPIN_US. A slower stream (a 7B model on the CPU
 * backend) never spins longer, so it keeps its cores; a tiny model on the
 * CPU backend (steps well under 10 ms) does spin. */
#define GRETA_SHM_SPIN_STREAM_US 10000
int greta_shm_spin_budget(int64_t since_us, int64_t interval_us);

/* Makes this process the owner (adoption): owner pid/start, generation + 1. */
void greta_shm_take_ownership(greta_shm *shm);
/* 1 when the owning supervisor is alive. */
int greta_shm_owner_alive(greta_shm *shm);
/* 1 when neither the owner nor any stage in the stage table is alive: the
 * segment was left by a dead instance and may be removed. */
int greta_shm_is_stale(greta_shm *shm);

#endif
