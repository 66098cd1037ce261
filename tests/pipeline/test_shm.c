/* test_shm.c - shared-memory layout, create/attach/validate, stale detection. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#include "proto/shm.h"

static char shm_name[64];

static int setup(void **state)
{
    (void)state;
    snprintf(shm_name, sizeof shm_name, "/greta-test-shm-%d", (int)getpid());
    shm_unlink(shm_name);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    shm_unlink(shm_name);
    return 0;
}

static void test_layout(void **state)
{
    (void)state;
    greta_error err = {0};
    greta_shm_geometry g = {4, 256, 512, 40};
    greta_shm_layout l;
    assert_int_equal(greta_shm_layout_compute(&g, &l, &err), 0);
    uint64_t offs[] = {l.stages_off, l.slots_off, l.tokens_off, l.logits_off, l.topk_off,
                       l.tokens_stride, l.logits_stride, l.topk_stride, l.slot_size};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        assert_int_equal(offs[i] % 64, 0);
    assert_true(l.stages_off >= sizeof(greta_shm_header));
    assert_true(l.slots_off >= l.stages_off + GRETA_STAGE_COUNT * 64);
    assert_int_equal(l.tokens_stride, 1088); /* 257 tokens (n_ctx + 1) padded to 64 bytes */
    assert_int_equal(l.logits_stride, 2048);
    assert_int_equal(l.topk_stride, 320);
    assert_true(l.tokens_off >= l.slots_off + 4 * l.slot_size);
    assert_int_equal(l.logits_off, l.tokens_off + 4 * 1088);
    assert_int_equal(l.topk_off, l.logits_off + 4 * 2048);
    assert_int_equal(l.total_size % 4096, 0);
    assert_true(l.total_size >= l.topk_off + 4 * 320);
    /* a vocab that is not a multiple of 16 floats gets a padded stride */
    g.n_vocab = 1001;
    assert_int_equal(greta_shm_layout_compute(&g, &l, &err), 0);
    assert_int_equal(l.logits_stride, 4032);

    /* limits name the field */
    greta_shm_geometry bad = {0, 256, 512, 0};
    assert_int_equal(greta_shm_layout_compute(&bad, &l, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "n_slots"));
    bad = (greta_shm_geometry){4, 256, GRETA_SHM_MAX_VOCAB + 1, 0};
    assert_int_equal(greta_shm_layout_compute(&bad, &l, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "n_vocab"));
    bad = (greta_shm_geometry){4, 256, 512, GRETA_SHM_MAX_TOPK + 1};
    assert_int_equal(greta_shm_layout_compute(&bad, &l, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "topk_max"));
    /* every dimension at its limit: over 4 GiB in all, refused */
    bad = (greta_shm_geometry){GRETA_SHM_MAX_SLOTS, GRETA_SHM_MAX_CTX, GRETA_SHM_MAX_VOCAB, GRETA_SHM_MAX_TOPK};
    assert_int_equal(greta_shm_layout_compute(&bad, &l, &err), GRETA_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "exceeds"));
}

static void test_create_attach(void **state)
{
    (void)state;
    greta_error err = {0};
    greta_shm_geometry g = {3, 128, 512, 8};
    greta_shm *a = NULL, *b = NULL;
    assert_int_equal(greta_shm_create(shm_name, "unit", &g, &a, &err), 0);
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", shm_name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    greta_shm_header *h = greta_shm_hdr(a);
    assert_memory_equal(h->magic, GRETA_SHM_MAGIC, 8);
    assert_int_equal(h->generation, 1);
    assert_int_equal(h->owner_pid, getpid());
    assert_string_equal(h->instance, "unit");
    assert_int_equal((uint64_t)st.st_size, h->total_size);

    /* exclusive creation */
    assert_int_equal(greta_shm_create(shm_name, "unit", &g, &b, &err), GRETA_ERR_STATE);
    assert_non_null(strstr(err.msg, "already exists"));

    assert_int_equal(greta_shm_attach(shm_name, &b, &err), 0);
    assert_int_equal(greta_shm_hdr(b)->n_vocab, 512);
    assert_int_equal(greta_shm_hdr(b)->n_slots, 3);
    /* what one mapping writes the other reads, at the documented offsets */
    greta_shm_tokens(a, 2)[127] = 4242;
    greta_shm_logits(a, 1)[511] = 1.5f;
    atomic_store(&greta_shm_slot_at(a, 2)->n_tokens, 128);
    assert_int_equal(greta_shm_tokens(b, 2)[127], 4242);
    assert_true(greta_shm_logits(b, 1)[511] == 1.5f);
    assert_int_equal(atomic_load(&greta_shm_slot_at(b, 2)->n_tokens), 128);
    uint8_t *raw = (uint8_t *)greta_shm_hdr(b);
    int32_t v;
    memcpy(&v, raw + h->tokens_off + 2 * h->tokens_stride + 127 * 4, 4);
    assert_int_equal(v, 4242);
    /* fresh slots have no sampled token yet */
    assert_int_equal(atomic_load(&greta_shm_slot_at(b, 0)->sampled_len), UINT32_MAX);

    greta_shm_detach(&b);
    assert_null(b);
    greta_shm_detach(&a);
    assert_int_equal(greta_shm_unlink(shm_name, &err), 0);
    assert_int_equal(greta_shm_attach(shm_name, &b, &err), GRETA_ERR_NOT_FOUND);
    assert_int_equal(greta_shm_unlink(shm_name, &err), 0); /* gone already: fine */
}

/* Copies a valid header into a buffer, breaks one field, expects the error. */
static void expect_invalid(const greta_shm_header *good, size_t size, void (*mutate)(greta_shm_header *),
                           size_t claimed, const char *field)
{
    uint8_t *buf = calloc(1, size);
    memcpy(buf, good, sizeof *good);
    mutate((greta_shm_header *)buf);
    greta_error err = {0};
    if (greta_shm_validate(buf, claimed ? claimed : size, &err) == 0)
        fail_msg("a header with a bad %s was accepted", field);
    free(buf);
    if (!strstr(err.msg, field))
        fail_msg("expected '%s' in '%s'", field, err.msg);
}

static void m_magic(greta_shm_header *h) { h->magic[0] = 'X'; }
static void m_version(greta_shm_header *h) { h->layout_version = 99; }
static void m_hsize(greta_shm_header *h) { h->header_size = 12; }
static void m_total(greta_shm_header *h) { h->total_size += 4096; }
static void m_offset(greta_shm_header *h) { h->logits_off += 64; }
static void m_vocab(greta_shm_header *h) { h->n_vocab = 0; }
static void m_string(greta_shm_header *h) { memset(h->model_path, 'x', sizeof h->model_path); }
static void m_none(greta_shm_header *h) { (void)h; }

static void test_validate_refuses(void **state)
{
    (void)state;
    greta_error err = {0};
    greta_shm_geometry g = {2, 64, 100, 0};
    greta_shm *a = NULL;
    assert_int_equal(greta_shm_create(shm_name, "unit", &g, &a, &err), 0);
    const greta_shm_header *h = greta_shm_hdr(a);
    size_t size = h->total_size;
    assert_int_equal(greta_shm_validate(h, size, &err), 0);
    expect_invalid(h, size, m_magic, 0, "magic");
    expect_invalid(h, size, m_version, 0, "layout_version: 99");
    expect_invalid(h, size, m_hsize, 0, "header_size");
    expect_invalid(h, size, m_total, 0, "total_size");
    expect_invalid(h, size, m_offset, 0, "logits_off");
    expect_invalid(h, size, m_vocab, 0, "n_vocab");
    expect_invalid(h, size, m_string, 0, "NUL");
    expect_invalid(h, size, m_none, 100, "smaller than");
    expect_invalid(h, size, m_none, size * 2, "total_size");
    greta_shm_detach(&a);
    shm_unlink(shm_name);

    /* a foreign segment of the right name: refused on attach, not mapped */
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 8192), 0);
    void *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    memset(p, 0xab, 8192);
    munmap(p, 8192);
    close(fd);
    assert_int_equal(greta_shm_attach(shm_name, &a, &err), GRETA_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "magic"));
    assert_non_null(strstr(err.msg, shm_name));
    shm_unlink(shm_name);
    /* a tiny one */
    fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_int_equal(ftruncate(fd, 16), 0);
    close(fd);
    assert_int_equal(greta_shm_attach(shm_name, &a, &err), GRETA_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "smaller than"));
}

static void test_stale_detection(void **state)
{
    (void)state;
    greta_error err = {0};
    /* the process start time identifies a process, not just its pid */
    uint64_t me = greta_proc_start_time(getpid());
    assert_true(me > 0);
    assert_true(greta_proc_alive(getpid(), me));
    assert_false(greta_proc_alive(getpid(), me + 1));
    assert_false(greta_proc_alive(0, 0));
    assert_int_equal(greta_proc_state(getpid()), 'R'); /* this process, reading its own stat */
    assert_int_equal(greta_proc_state(0), 0);

    /* a child creates the segment and dies: the segment is stale */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        greta_shm_geometry g = {1, 16, 16, 0};
        greta_shm *s = NULL;
        _exit(greta_shm_create(shm_name, "unit", &g, &s, NULL) == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(greta_proc_alive(child, 0));

    greta_shm *s = NULL;
    assert_int_equal(greta_shm_attach(shm_name, &s, &err), 0);
    assert_int_equal(greta_shm_hdr(s)->owner_pid, child);
    assert_false(greta_shm_owner_alive(s));
    assert_true(greta_shm_is_stale(s));

    /* a stage that still runs keeps it alive (the supervisor died, stages serve) */
    greta_shm_stage *st = greta_shm_stage_at(s, GRETA_STAGE_SAMPLER);
    atomic_store(&st->pid, (int32_t)getpid());
    atomic_store(&st->start_time, me);
    assert_false(greta_shm_is_stale(s));
    /* ... unless the pid was reused by another process (start time differs) */
    atomic_store(&st->start_time, me + 7);
    assert_true(greta_shm_is_stale(s));

    /* adoption: a new owner, a new generation */
    uint64_t gen = greta_shm_hdr(s)->generation;
    greta_shm_take_ownership(s);
    assert_int_equal(greta_shm_hdr(s)->generation, gen + 1);
    assert_true(greta_shm_owner_alive(s));
    assert_false(greta_shm_is_stale(s));
    greta_shm_detach(&s);
}

static void test_stage_names(void **state)
{
    (void)state;
    assert_string_equal(greta_stage_name(GRETA_STAGE_WORKER), "gpu-worker");
    assert_int_equal(greta_stage_from_name("sampler"), GRETA_STAGE_SAMPLER);
    assert_int_equal(greta_stage_from_name("tokenizer"), GRETA_STAGE_TOKENIZER);
    assert_int_equal(greta_stage_from_name("frontend"), -1);
    assert_null(greta_stage_name(GRETA_STAGE_COUNT));
}

/* Doorbells across processes: a child waits on a word of a shared mapping
 * and the parent rings it; an unrung bell times out with 0. */
static void test_doorbell(void **state)
{
    (void)state;
    _Atomic uint32_t *bell = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(bell != MAP_FAILED);
    atomic_store(&bell[0], 7);
    atomic_store(&bell[1], 0); /* the child says it is about to wait */
    assert_int_equal(greta_shm_wait(&bell[0], 7, 1000), 0);  /* nothing rang */
    assert_int_equal(greta_shm_wait(&bell[0], 6, 1000000), 1); /* differs already: no wait */
    pid_t pid = fork();
    if (pid == 0) {
        atomic_store(&bell[1], 1);
        int woke = 0;
        for (int i = 0; i < 100 && !woke; i++) /* up to 10 s: a busy machine */
            woke = greta_shm_wait(&bell[0], 7, 100000);
        _exit(woke && atomic_load(&bell[0]) == 8 ? 0 : 1);
    }
    while (!atomic_load(&bell[1]))
        usleep(1000);
    usleep(20000); /* most likely asleep in the futex by now (either way it must see 8) */
    greta_shm_ring(&bell[0], 8);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    munmap((void *)bell, 4096);
}

/* The spin policy: through twice a fast stream's step interval, else the
 * short default; and a spinning wait still times out and sees a ring. */
static void test_spin_budget(void **state)
{
    (void)state;
    assert_int_equal(greta_shm_spin_budget(-1, 0), GRETA_SHM_SPIN_US);      /* no step yet */
    assert_int_equal(greta_shm_spin_budget(100, 0), GRETA_SHM_SPIN_US);     /* one step: no interval */
    assert_int_equal(greta_shm_spin_budget(500, 2400), 4300);               /* GPU decode: the rest of 2 steps */
    assert_int_equal(greta_shm_spin_budget(4790, 2400), GRETA_SHM_SPIN_US); /* nearly over: the floor */
    assert_int_equal(greta_shm_spin_budget(5000, 2400), GRETA_SHM_SPIN_US); /* the stream paused */
    assert_int_equal(greta_shm_spin_budget(0, GRETA_SHM_SPIN_STREAM_US), 2 * GRETA_SHM_SPIN_STREAM_US);
    assert_int_equal(greta_shm_spin_budget(0, GRETA_SHM_SPIN_STREAM_US + 1), GRETA_SHM_SPIN_US); /* slow: CPU */
    _Atomic uint32_t bell = 3;
    assert_int_equal(greta_shm_wait_spin(&bell, 3, 2000, 3000), 0); /* spins 2 ms, sleeps 1 ms, nothing rang */
    assert_int_equal(greta_shm_wait_spin(&bell, 2, 2000, 3000), 1);
    assert_int_equal(greta_shm_wait_spin(&bell, 3, 0, 1000), 0); /* no spin at all */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test_setup_teardown(test_create_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_detection, setup, teardown),
        cmocka_unit_test(test_stage_names),
        cmocka_unit_test(test_doorbell),
        cmocka_unit_test(test_spin_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
