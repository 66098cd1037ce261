/* test_drift_cli.c - `greta drift` as a user runs it (the greta binary is
 * argv[1]). Everywhere ("cpu"): bad arguments; the self-check against a
 * second CPU backend over 300 generated positions of stories260K (every
 * figure exactly 0, no divergence, the reference's greedy tokens are the
 * known greedy output), the Markdown and JSON shapes, --md, -p/-f, the
 * context clamp and --past-context, --all over two models. With a GPU
 * ("gpu"): the default, kv-f32, act-f32 and all-f32 variants over 300
 * positions, no NaN/Inf, the fp32 cache closer to the reference, the
 * blocks table. Without GPU
 * support or a GPU, --test gpu fails with a clear message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli_test_util.h"

static const char *greta_bin;
static char tmp[256];
static char model[1024];

static cli_result run(const char *env, const char *args)
{
    return cli_run(greta_bin, "drift", tmp, env, args);
}

#define NEED_MODEL()                                            \
    if (!model[0]) {                                            \
        GRETA_TESTDATA_OR_SKIP(m_, "stories260K.gguf");         \
        (void)m_;                                               \
    }

static const cJSON *get(const cJSON *j, const char *path)
{
    /* "a.b.c" through objects; a number picks an array element */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = j;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        cur = (*k >= '0' && *k <= '9') ? cJSON_GetArrayItem(cur, atoi(k)) : cJSON_GetObjectItemCaseSensitive(cur, k);
        if (!cur)
            fail_msg("JSON has no %s (at '%s')", path, k);
    }
    return cur;
}

static double num(const cJSON *j, const char *path)
{
    const cJSON *v = get(j, path);
    if (!cJSON_IsNumber(v))
        fail_msg("JSON %s is not a number", path);
    return v->valuedouble;
}

static void test_bad_arguments(void **state)
{
    (void)state;
    static const struct {
        const char *args, *msg;
    } cases[] = {
        {"-n 0", "-n must be an integer"},
        {"-n x", "-n must be an integer"},
        {"-t 0", "-t must be an integer"},
        {"--test tpu", "--test must be gpu or cpu"},
        {"--variants foo", "unknown variant 'foo'"},
        {"--variants default,default", "'default' is given twice"},
        {"--variants default,", "empty name"},
        {"--variants ''", "--variants is empty"},
        {"--test cpu --variants kv-f32", "switches a GPU block"},
        {"--test cpu --variants default,kv-f32", "switches a GPU block"},
        {"-p a -f b", "give -p or -f, not both"},
        {"model.gguf", "unexpected argument 'model.gguf'"},
        {"--all", "--all needs the models"},
        {"-m a.gguf -m b.gguf", "one -m MODEL"},
        {"--frobnicate 1", "unknown option"},
        {"-m", "missing value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_result r = run(NULL, cases[i].args);
        if (r.rc != 2)
            fail_msg("'drift %s': exit %d, want 2\n%s", cases[i].args, r.rc, r.err);
        ASSERT_CONTAINS(r.err, cases[i].msg);
        cli_result_free(&r);
    }
    cli_result r = run(NULL, "--help");
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.out, "teacher-forced");
    ASSERT_CONTAINS(r.out, "--past-context");
    cli_result_free(&r);
    r = run(NULL, "-m /nonexistent/model.gguf --test cpu");
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "/nonexistent/model.gguf");
    cli_result_free(&r);
    r = run(NULL, "--test cpu --all /nonexistent/a.gguf");
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "/nonexistent/a.gguf");
    cli_result_free(&r);
    char args[2048];
    snprintf(args, sizeof args, "-m '%s' --test cpu -n 2 --json /nonexistent/dir/x.json", model);
    if (model[0]) {
        r = run(NULL, args);
        assert_int_equal(r.rc, 1);
        ASSERT_CONTAINS(r.err, "cannot write /nonexistent/dir/x.json");
        cli_result_free(&r);
    }
}

/* Every difference figure of a summary object is exactly 0. */
static void assert_exact(const cJSON *s, const char *where)
{
    static const char *const zero[] = {"max_abs_diff", "max_rel_diff", "p99_rel_diff", "max_p99_abs_diff",
                                       "mean_kl", "max_kl", "nan_inf"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (num(s, zero[i]) != 0.0)
            fail_msg("%s: %s = %g, want 0", where, zero[i], num(s, zero[i]));
    static const char *const one[] = {"top1_agreement", "top5_overlap", "top10_overlap"};
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++)
        if (num(s, one[i]) != 1.0)
            fail_msg("%s: %s = %g, want 1", where, one[i], num(s, one[i]));
    assert_int_equal((int)num(s, "first_top1_miss"), -1);
}

static void test_self_check_cpu(void **state)
{
    (void)state;
    NEED_MODEL();
    char args[4096], json[512], md[512];
    snprintf(json, sizeof json, "%s/self.json", tmp);
    snprintf(md, sizeof md, "%s/self.md", tmp);
    snprintf(args, sizeof args, "-m '%s' --test cpu -t 1 -n 300 --json '%s' --md '%s'", model, json, md);
    cli_result r = run("GRETA_COMMIT=drift123", args);
    if (r.rc != 0)
        fail_msg("self-check failed (%d):\n%s", r.rc, r.err);
    /* Markdown: on stdout and, the same, in --md */
    char *mdtext = greta_read_file(md, NULL);
    assert_non_null(mdtext);
    assert_string_equal(mdtext, r.out);
    free(mdtext);
    ASSERT_CONTAINS(r.out, "# greta drift: cpu against the FP32 CPU reference");
    ASSERT_CONTAINS(r.out, "## stories260K.gguf");
    ASSERT_CONTAINS(r.out, "1 prompt token + 300 generated = 301 positions");
    ASSERT_CONTAINS(r.out, "| cpu default | 100.00% | 1.0000 | 1.0000 | 0.000e+00 |");
    ASSERT_CONTAINS(r.out, "none in 300");
    ASSERT_CONTAINS(r.out, "| 0-30 |");
    ASSERT_CONTAINS(r.out, "| 279-300 |");
    ASSERT_CONTAINS(r.err, "1 thread");

    cJSON *j = cli_read_json(json);
    assert_string_equal(get(j, "tool")->valuestring, "greta drift");
    assert_string_equal(get(j, "commit")->valuestring, "drift123");
    assert_true(cJSON_IsTrue(get(j, "complete")));
    assert_string_equal(get(j, "settings.test")->valuestring, "cpu");
    assert_int_equal(cJSON_GetArraySize(get(j, "settings.variants")), 1);
    assert_string_equal(get(j, "test_backend.name")->valuestring, "cpu");
    assert_int_equal(cJSON_GetArraySize(get(j, "models")), 1);
    assert_int_equal((int)num(j, "models.0.positions"), 301);
    assert_int_equal((int)num(j, "models.0.n_prompt"), 1);
    assert_int_equal((int)num(j, "models.0.n_generated"), 300);
    assert_true(cJSON_IsFalse(get(j, "models.0.clamped_to_context")));
    assert_int_equal(cJSON_GetArraySize(get(j, "models.0.blocks")), 0); /* CPU vs CPU: no GPU blocks */
    assert_int_equal(cJSON_GetArraySize(get(j, "models.0.variants")), 1);
    assert_string_equal(get(j, "models.0.variants.0.name")->valuestring, "default");
    assert_exact(get(j, "models.0.variants.0.teacher_forced.summary"), "summary");
    /* 10 windows covering [0, 301) without gaps */
    const cJSON *wins = get(j, "models.0.variants.0.teacher_forced.windows");
    assert_int_equal(cJSON_GetArraySize(wins), 10);
    int at = 0;
    for (int w = 0; w < 10; w++) {
        const cJSON *s = cJSON_GetArrayItem(wins, w);
        assert_int_equal((int)num(s, "from"), at);
        at = (int)num(s, "to");
        assert_exact(s, "window");
    }
    assert_int_equal(at, 301);
    /* per position: every column has 301 entries, all differences 0 */
    const cJSON *pos = get(j, "models.0.variants.0.teacher_forced.positions");
    static const char *const cols[] = {"token", "top1_ref", "top1_test", "top5_overlap", "top10_overlap", "std_ref",
                                       "max_abs_diff", "max_rel_diff", "p99_abs_diff", "p99_rel_diff", "kl", "nan_inf"};
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
        assert_int_equal(cJSON_GetArraySize(get(pos, cols[c])), 301);
    for (int p = 0; p < 301; p++) {
        assert_true(cJSON_GetArrayItem(get(pos, "kl"), p)->valuedouble == 0.0);
        assert_true(cJSON_GetArrayItem(get(pos, "max_abs_diff"), p)->valuedouble == 0.0);
        assert_true(cJSON_GetArrayItem(get(pos, "std_ref"), p)->valuedouble > 0.0);
        assert_int_equal(cJSON_GetArrayItem(get(pos, "top1_ref"), p)->valueint,
                         cJSON_GetArrayItem(get(pos, "top1_test"), p)->valueint);
    }
    /* the teacher sequence is the reference's greedy output: the known one */
    const cJSON *ref_tokens = get(j, "models.0.reference.tokens");
    assert_int_equal(cJSON_GetArraySize(ref_tokens), 300);
    for (int p = 0; p + 1 < 301; p++) /* position p's top-1 is the token fed at p + 1 */
        assert_int_equal(cJSON_GetArrayItem(get(pos, "top1_ref"), p)->valueint,
                         cJSON_GetArrayItem(ref_tokens, p)->valueint);
    const char *gpath = greta_testdata_find("stories260K-greedy.json");
    if (gpath) {
        cJSON *g = cli_read_json(gpath);
        const cJSON *ids = get(g, "ids");
        for (int i = 1; i < cJSON_GetArraySize(ids) && i <= 300; i++)
            assert_int_equal(cJSON_GetArrayItem(ref_tokens, i - 1)->valueint, cJSON_GetArrayItem(ids, i)->valueint);
        cJSON_Delete(g);
    }
    /* free-running: the same tokens, no divergence */
    assert_true(cJSON_IsNull(get(j, "models.0.variants.0.free_running.first_divergence")));
    const cJSON *fr = get(j, "models.0.variants.0.free_running.tokens");
    assert_int_equal(cJSON_GetArraySize(fr), 300);
    for (int i = 0; i < 300; i++)
        assert_int_equal(cJSON_GetArrayItem(fr, i)->valueint, cJSON_GetArrayItem(ref_tokens, i)->valueint);
    assert_int_equal((int)num(j, "models.0.variants.0.nan_inf"), 0);
    cJSON_Delete(j);
    cli_result_free(&r);
}

static void test_prompt_clamp_all(void **state)
{
    (void)state;
    NEED_MODEL();
    char args[4096], json[512], pf[512];
    /* -p and -f give the same prompt tokens */
    snprintf(json, sizeof json, "%s/p.json", tmp);
    snprintf(args, sizeof args, "-m '%s' --test cpu -t 1 -n 5 -p 'Once upon a time' --json '%s'", model, json);
    cli_result r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    cli_result_free(&r);
    cJSON *a = cli_read_json(json);
    assert_true(num(a, "models.0.n_prompt") >= 2);
    assert_string_equal(get(a, "settings.prompt")->valuestring, "Once upon a time");
    snprintf(pf, sizeof pf, "%s/prompt.txt", tmp);
    FILE *f = fopen(pf, "w");
    assert_non_null(f);
    fputs("Once upon a time", f);
    fclose(f);
    snprintf(args, sizeof args, "-m '%s' --test cpu -t 1 -n 5 -f '%s' --json '%s'", model, pf, json);
    r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.out, "Prompt: \"Once upon a time\"");
    cli_result_free(&r);
    cJSON *b = cli_read_json(json);
    char *pa = cJSON_PrintUnformatted(get(a, "models.0.prompt_tokens"));
    char *pb = cJSON_PrintUnformatted(get(b, "models.0.prompt_tokens"));
    assert_string_equal(pa, pb);
    free(pa);
    free(pb);
    assert_exact(get(b, "models.0.variants.0.teacher_forced.summary"), "prompt run");
    cJSON_Delete(a);
    cJSON_Delete(b);

    /* a model of context 512 and a prompt of about 500 tokens: -n 600 is
     * clamped to what is left of the context, unless --past-context */
    const char *q = greta_testdata_find("quant/gqa-Q8_0.gguf");
    if (!q)
        return;
    char qpath[1024];
    snprintf(qpath, sizeof qpath, "%s", q);
    f = fopen(pf, "w");
    assert_non_null(f);
    for (int i = 0; i < 45; i++)
        fputs("The dog ran to the park. ", f);
    fclose(f);
    snprintf(args, sizeof args, "-m '%s' --test cpu -t 1 -n 600 -f '%s' --json '%s'", qpath, pf, json);
    r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("clamp run failed (%d):\n%s", r.rc, r.err);
    ASSERT_CONTAINS(r.out, "(600 asked for: clamped to the model's context)");
    cli_result_free(&r);
    cJSON *c = cli_read_json(json);
    const int n_prompt = (int)num(c, "models.0.n_prompt");
    assert_true(n_prompt >= 400 && n_prompt < 512);
    assert_int_equal((int)num(c, "models.0.n_generated"), 512 - n_prompt);
    assert_int_equal((int)num(c, "models.0.positions"), 512);
    assert_true(cJSON_IsTrue(get(c, "models.0.clamped_to_context")));
    assert_true(cJSON_IsFalse(get(c, "models.0.past_context")));
    assert_exact(get(c, "models.0.variants.0.teacher_forced.summary"), "clamped");
    cJSON_Delete(c);
    snprintf(args, sizeof args, "-m '%s' --test cpu -t 1 -n 30 -f '%s' --past-context --json '%s'", qpath, pf, json);
    r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("--past-context run failed (%d):\n%s", r.rc, r.err);
    ASSERT_CONTAINS(r.out, "past the model's context of 512");
    cli_result_free(&r);
    c = cli_read_json(json);
    assert_int_equal((int)num(c, "models.0.n_generated"), 30);
    assert_int_equal((int)num(c, "models.0.positions"), n_prompt + 30);
    assert_true(cJSON_IsTrue(get(c, "models.0.past_context")));
    assert_true(cJSON_IsFalse(get(c, "models.0.clamped_to_context")));
    assert_exact(get(c, "models.0.variants.0.teacher_forced.summary"), "past context");
    assert_true(cJSON_IsNull(get(c, "models.0.variants.0.free_running.first_divergence")));
    cJSON_Delete(c);

    /* --all: both models, an overview table, options after the models */
    snprintf(args, sizeof args, "--test cpu --all '%s' '%s' -t 1 -n 8 --json '%s'", model, qpath, json);
    r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("--all run failed (%d):\n%s", r.rc, r.err);
    ASSERT_CONTAINS(r.out, "| stories260K.gguf | 9 | 100.00% |");
    ASSERT_CONTAINS(r.out, "| gqa-Q8_0.gguf | 9 | 100.00% |");
    ASSERT_CONTAINS(r.out, "## gqa-Q8_0.gguf");
    cli_result_free(&r);
    c = cli_read_json(json);
    assert_int_equal(cJSON_GetArraySize(get(c, "models")), 2);
    assert_non_null(strstr(get(c, "models.1.path")->valuestring, "gqa-Q8_0.gguf"));
    cJSON_Delete(c);

    /* a model that cannot be measured: the others still are, the report
     * says which failed, exit 1 */
    snprintf(args, sizeof args, "--test cpu --all /nonexistent/b.gguf '%s' -t 1 -n 4 --json '%s'", model, json);
    r = run(NULL, args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.out, "| b.gguf | not measured (below) |");
    ASSERT_CONTAINS(r.out, "| stories260K.gguf | 5 | 100.00% |");
    ASSERT_CONTAINS(r.out, "## b.gguf\n\nNot measured: ");
    ASSERT_CONTAINS(r.err, "1 of 2 models could not be measured");
    cli_result_free(&r);
    c = cli_read_json(json);
    assert_non_null(strstr(get(c, "models.0.error")->valuestring, "/nonexistent/b.gguf"));
    assert_int_equal((int)num(c, "models.1.positions"), 5);
    assert_string_equal(get(c, "reference_backend")->valuestring, get(c, "models.1.reference.detail")->valuestring);
    cJSON_Delete(c);
}

static void test_gpu_drift(void **state)
{
    (void)state;
    NEED_MODEL();
    char args[4096], json[512];
    if (!cli_have_gpu()) {
        snprintf(args, sizeof args, "-m '%s' -n 4", model);
        cli_result r = run(NULL, args);
        cli_no_gpu_skip(&r);
        return;
    }
    snprintf(json, sizeof json, "%s/gpu.json", tmp);
    snprintf(args, sizeof args, "-m '%s' -n 300 --json '%s'", model, json);
    cli_result r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("drift stories260K failed (%d):\n%s", r.rc, r.err);
    ASSERT_CONTAINS(r.out, "| KV cache | fp16 storage (keys, values) | kv-f32 |");
    ASSERT_CONTAINS(r.out, "| softmax | fp32 (online, in the attention kernel) | already FP32 | | | 0 | 0 |");
    cJSON *j = cli_read_json(json);
    assert_string_equal(get(j, "test_backend.name")->valuestring, "gpu");
    assert_non_null(cJSON_GetObjectItem(get(j, "test_backend"), "device"));
    assert_int_equal(cJSON_GetArraySize(get(j, "models.0.variants")), 4);
    assert_string_equal(get(j, "models.0.variants.0.kv_cache")->valuestring, "fp16");
    assert_string_equal(get(j, "models.0.variants.1.kv_cache")->valuestring, "fp32");
    assert_string_equal(get(j, "models.0.variants.2.name")->valuestring, "act-f32");
    assert_string_equal(get(j, "models.0.variants.2.activations")->valuestring, "fp32");
    assert_string_equal(get(j, "models.0.variants.0.activations")->valuestring, "default");
    assert_string_equal(get(j, "models.0.variants.3.kv_cache")->valuestring, "fp32");
    assert_string_equal(get(j, "models.0.variants.3.activations")->valuestring, "fp32");
    for (int v = 0; v < 4; v++) {
        char key[64];
        snprintf(key, sizeof key, "models.0.variants.%d.nan_inf", v);
        assert_int_equal((int)num(j, key), 0);
    }
    const double p16 = num(j, "models.0.variants.0.teacher_forced.summary.p99_rel_diff");
    const double p32 = num(j, "models.0.variants.1.teacher_forced.summary.p99_rel_diff");
    print_message("stories260K drift over 301 positions, p99 |d|/sd: fp16 KV %.3g, fp32 KV %.3g\n", p16, p32);
    assert_true(p16 > 0.0 && p16 < 1e-2);
    assert_true(p32 < p16);
    assert_true(num(j, "models.0.variants.0.teacher_forced.summary.top10_overlap") > 0.95);
    assert_int_equal(cJSON_GetArraySize(get(j, "models.0.blocks")), 6);
    assert_string_equal(get(j, "models.0.blocks.0.status")->valuestring, "measured");
    assert_true(num(j, "models.0.blocks.0.p99_rel_share") > 0.0);
    assert_string_equal(get(j, "models.0.blocks.1.switch")->valuestring, "act-f32");
    assert_string_equal(get(j, "models.0.blocks.1.status")->valuestring, "measured");
    assert_string_equal(get(j, "models.0.blocks.3.status")->valuestring, "already fp32");
    /* stories260K (dim 64) has no product with 16-bit inputs: act-f32 changes nothing */
    assert_true(num(j, "models.0.variants.2.teacher_forced.summary.p99_rel_diff") == p16);
    assert_true(num(j, "models.0.variants.3.teacher_forced.summary.p99_rel_diff") == p32);
    cJSON_Delete(j);
    cli_result_free(&r);
    /* only the default variant when asked */
    snprintf(args, sizeof args, "-m '%s' -n 8 --variants default --json '%s'", model, json);
    r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.out, "--variants kv-f32 (not run)");
    cli_result_free(&r);
    j = cli_read_json(json);
    assert_int_equal(cJSON_GetArraySize(get(j, "models.0.variants")), 1);
    assert_string_equal(get(j, "models.0.blocks.0.status")->valuestring, "not run");
    cJSON_Delete(j);
}

static int setup(void **state)
{
    (void)state;
    const char *m = greta_testdata_find("stories260K.gguf");
    if (m)
        snprintf(model, sizeof model, "%s", m);
    snprintf(tmp, sizeof tmp, "/tmp/greta-drift-cli-XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const files[] = {"out.txt", "err.txt", "self.json", "self.md", "p.json", "prompt.txt",
                                        "gpu.json"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        unlink(path);
    }
    rmdir(tmp);
    return 0;
}

/* argv[2]: "cpu" runs the parts that need no GPU, "gpu" the GPU part. */
int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[2], "cpu") && strcmp(argv[2], "gpu"))) {
        fprintf(stderr, "usage: %s GRETA_BINARY cpu|gpu\n", argv[0]);
        return 2;
    }
    greta_bin = argv[1];
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_self_check_cpu),
        cmocka_unit_test(test_prompt_clamp_all),
    };
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_gpu_drift),
    };
    if (!strcmp(argv[2], "cpu"))
        return cmocka_run_group_tests(cpu_tests, setup, teardown);
    return cmocka_run_group_tests(gpu_tests, setup, teardown);
}
