/* test_parity_cli.c - `greta parity` as a user runs it (the greta binary is
 * argv[1]). Everywhere: bad arguments, and the tool's self-check against a
 * second CPU backend (every figure exact, table and JSON, -p/-f, -n, -t,
 * $GRETA_COMMIT); the reference's KV format: --ref-kv f16 (the default) is
 * gated exactly while its informational "fp32_reference" figures show the
 * fp16 rounding (small, not zero), --ref-kv f32 has no fp32_reference, nor
 * has --no-fp32-ref. With a GPU: stories260K and a quant fixture pass the
 * required checks, the fp16-KV reference is closer to the GPU than the fp32
 * one, and --max-p99 / --max-kl fail a run when set below the measured
 * difference. Without GPU support or a GPU, --test gpu fails with a clear
 * message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli_test_util.h"

static const char *greta_bin;
static char tmp[256];
static char model[1024];

static cli_result run(const char *env, const char *args)
{
    return cli_run(greta_bin, "parity", tmp, env, args);
}

#define NEED_MODEL()                                            \
    if (!model[0]) {                                            \
        GRETA_TESTDATA_OR_SKIP(m_, "stories260K.gguf");         \
        (void)m_;                                               \
    }

static double summary_num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "summary"), key);
    assert_non_null(v);
    return v->valuedouble;
}

static void test_bad_arguments(void **state)
{
    static const struct {
        const char *args, *msg;
    } cases[] = {
        {"-n x", "-n must be an integer"},
        {"-n -1", "-n must be an integer"},
        {"-t 0", "-t must be an integer"},
        {"--test tpu", "--test must be gpu or cpu"},
        {"--gpu-kv f8", "--gpu-kv must be f16 or f32"},
        {"--ref-kv fp16", "--ref-kv must be f16 or f32"},
        {"--ref-kv", "missing value"},
        {"--max-p99 -1", "--max-p99 must be a number >= 0"},
        {"--max-kl nan", "--max-kl must be a number >= 0"},
        {"-p a -f b", "give -p or -f, not both"},
        {"--frobnicate 1", "unknown option"},
        {"-m", "missing value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_result r = run(NULL, cases[i].args);
        if (r.rc != 2)
            fail_msg("'parity %s': exit %d, want 2", cases[i].args, r.rc);
        ASSERT_CONTAINS(r.err, cases[i].msg);
        cli_result_free(&r);
    }
    cli_result r = run(NULL, "--help");
    assert_int_equal(r.rc, 0);
    ASSERT_CONTAINS(r.out, "teacher");
    cli_result_free(&r);
    r = run(NULL, "-m /nonexistent/model.gguf --test cpu");
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "/nonexistent/model.gguf");
    cli_result_free(&r);
}

static void test_self_check_cpu(void **state)
{
    NEED_MODEL();
    char args[4096], json[512], json2[512], pf[512];
    snprintf(json, sizeof json, "%s/self.json", tmp);
    snprintf(args, sizeof args, "-m '%s' --test cpu -t 1 -n 8 -p 'Once upon a time' --json '%s' --max-p99 0 --max-kl 0",
             model, json);
    cli_result r = run("GRETA_COMMIT=abc123test", args);
    if (r.rc != 0)
        fail_msg("self-check failed (%d):\n%s", r.rc, r.err);
    ASSERT_CONTAINS(r.err, "PASS");
    ASSERT_CONTAINS(r.err, "1 thread");
    ASSERT_CONTAINS(r.out, "max|d|/sd");
    cJSON *j = cli_read_json(json);
    const int n_prompt = cJSON_GetObjectItem(j, "n_prompt")->valueint;
    assert_true(n_prompt >= 2); /* BOS + text */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "positions")), n_prompt + 8);
    assert_int_equal((int)summary_num(j, "positions"), n_prompt + 8);
    assert_true(summary_num(j, "top1_agreement") == 1.0);
    assert_true(summary_num(j, "max_rel_diff") == 0.0);
    assert_true(summary_num(j, "p99_rel_diff") == 0.0);
    assert_true(summary_num(j, "mean_kl") == 0.0);
    assert_true(summary_num(j, "nan_inf") == 0.0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "summary"), "pass")));
    assert_string_equal(cJSON_GetObjectItem(j, "commit")->valuestring, "abc123test");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "test_backend"), "name")->valuestring, "cpu");
    /* the default reference stores fp16 values, the test CPU backend too;
     * the pure fp32 reference differs a little, reported beside the verdict */
    assert_string_equal(cJSON_GetObjectItem(j, "ref_kv")->valuestring, "fp16");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "test_backend"), "kv_cache")->valuestring, "fp16");
    ASSERT_CONTAINS(cJSON_GetObjectItem(j, "reference_backend")->valuestring, "fp16 KV");
    ASSERT_CONTAINS(r.err, "for information, against the fp32 reference");
    ASSERT_CONTAINS(r.err, "PASS (against the fp16-KV reference");
    const cJSON *f32ref = cJSON_GetObjectItem(j, "fp32_reference");
    assert_non_null(f32ref);
    assert_string_equal(cJSON_GetObjectItem(f32ref, "ref_kv")->valuestring, "fp32");
    assert_null(strstr(cJSON_GetObjectItem(f32ref, "reference_backend")->valuestring, "fp16"));
    assert_int_equal(cJSON_GetObjectItem(f32ref, "positions")->valueint, n_prompt + 8);
    const double p99_f32ref = cJSON_GetObjectItem(f32ref, "p99_rel_diff")->valuedouble;
    const double max_f32ref = cJSON_GetObjectItem(f32ref, "max_rel_diff")->valuedouble;
    print_message("fp16-KV CPU vs the fp32 reference: p99 |d|/sd %.3g, max %.3g, mean KL %.3g\n", p99_f32ref,
                  max_f32ref, cJSON_GetObjectItem(f32ref, "mean_kl")->valuedouble);
    assert_true(p99_f32ref > 0.0 && p99_f32ref <= max_f32ref && max_f32ref < 1e-2);
    assert_true(cJSON_GetObjectItem(f32ref, "mean_kl")->valuedouble > 0.0);
    assert_true(cJSON_GetObjectItem(f32ref, "top1_agreement")->valuedouble == 1.0);
    assert_true(cJSON_GetObjectItem(f32ref, "nan_inf")->valuedouble == 0.0);
    assert_null(cJSON_GetObjectItem(f32ref, "pass")); /* not gated */
    /* one table row per position after the header */
    int lines = 0;
    for (const char *p = r.out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1 + n_prompt + 8);
    cli_result_free(&r);
    /* the same prompt from a file, and -n 0 */
    snprintf(pf, sizeof pf, "%s/prompt.txt", tmp);
    FILE *f = fopen(pf, "w");
    assert_non_null(f);
    fputs("Once upon a time", f);
    fclose(f);
    snprintf(json2, sizeof json2, "%s/self2.json", tmp);
    snprintf(args, sizeof args, "-m '%s' --test cpu -n 0 -f '%s' --json '%s'", model, pf, json2);
    r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    cJSON *j2 = cli_read_json(json2);
    assert_int_equal(cJSON_GetObjectItem(j2, "n_prompt")->valueint, n_prompt);
    assert_int_equal((int)summary_num(j2, "positions"), n_prompt);
    /* the per-position tokens are the same sequence */
    for (int i = 0; i < n_prompt; i++)
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "positions"), i), "token")->valueint,
                         cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j2, "positions"), i), "token")->valueint);
    cJSON_Delete(j);
    cJSON_Delete(j2);
    cli_result_free(&r);
    /* --ref-kv f32: both CPU backends fp32, exact, nothing more to report;
     * --no-fp32-ref: the fp16 reference alone */
    snprintf(args, sizeof args,
             "-m '%s' --test cpu -t 1 -n 8 -p 'Once upon a time' --ref-kv f32 --max-p99 0 --json '%s'", model, json);
    r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("--ref-kv f32 self-check failed (%d):\n%s", r.rc, r.err);
    assert_null(strstr(r.err, "fp32 reference"));
    ASSERT_CONTAINS(r.err, "PASS (against the fp32-KV reference");
    cli_result_free(&r);
    j = cli_read_json(json);
    assert_string_equal(cJSON_GetObjectItem(j, "ref_kv")->valuestring, "fp32");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "test_backend"), "kv_cache")->valuestring, "fp32");
    assert_null(strstr(cJSON_GetObjectItem(j, "reference_backend")->valuestring, "fp16"));
    assert_null(cJSON_GetObjectItem(j, "fp32_reference"));
    assert_true(summary_num(j, "p99_rel_diff") == 0.0 && summary_num(j, "max_rel_diff") == 0.0);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "-m '%s' --test cpu -t 1 -n 8 -p 'Once upon a time' --no-fp32-ref --json '%s'", model,
             json);
    r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    assert_null(strstr(r.err, "fp32 reference"));
    ASSERT_CONTAINS(r.err, "PASS (against the fp16-KV reference");
    cli_result_free(&r);
    j = cli_read_json(json);
    assert_string_equal(cJSON_GetObjectItem(j, "ref_kv")->valuestring, "fp16");
    assert_null(cJSON_GetObjectItem(j, "fp32_reference"));
    assert_true(summary_num(j, "p99_rel_diff") == 0.0);
    cJSON_Delete(j);
    /* the GPU cache type is for the GPU */
    snprintf(args, sizeof args, "-m '%s' --test cpu --gpu-kv f32 -n 1", model);
    r = run(NULL, args);
    assert_int_equal(r.rc, 2);
    ASSERT_CONTAINS(r.err, "--gpu-kv is for --test gpu");
    cli_result_free(&r);
}

static void test_gpu_parity(void **state)
{
    NEED_MODEL();
    char args[4096], json[512];
    if (!cli_have_gpu()) {
        snprintf(args, sizeof args, "-m '%s' -n 4", model);
        cli_result r = run(NULL, args);
        cli_no_gpu_skip(&r);
        return;
    }
    /* stories260K from BOS: the required checks pass */
    snprintf(json, sizeof json, "%s/gpu.json", tmp);
    snprintf(args, sizeof args, "-m '%s' -n 64 --json '%s'", model, json);
    cli_result r = run(NULL, args);
    if (r.rc != 0)
        fail_msg("parity stories260K failed (%d):\n%s", r.rc, r.err);
    ASSERT_CONTAINS(r.err, "PASS");
    cJSON *j = cli_read_json(json);
    const cJSON *tb = cJSON_GetObjectItem(j, "test_backend");
    assert_string_equal(cJSON_GetObjectItem(tb, "kv_cache")->valuestring, "fp16");
    assert_string_equal(cJSON_GetObjectItem(tb, "name")->valuestring, "gpu");
    assert_non_null(cJSON_GetObjectItem(tb, "device"));
    assert_non_null(cJSON_GetObjectItem(tb, "driver_version"));
    const double p99v = summary_num(j, "p99_rel_diff"), kl = summary_num(j, "mean_kl");
    assert_true(summary_num(j, "top1_agreement") == 1.0);
    assert_true(summary_num(j, "nan_inf") == 0.0);
    assert_true(p99v > 0.0 && p99v < 1e-2); /* another summation order: small, not zero */
    assert_true(kl >= 0.0 && kl < 1e-3);
    /* gated against the fp16-KV reference; the fp32 one is further away */
    assert_string_equal(cJSON_GetObjectItem(j, "ref_kv")->valuestring, "fp16");
    const cJSON *f32ref = cJSON_GetObjectItem(j, "fp32_reference");
    assert_non_null(f32ref);
    const double p99_vs_f32 = cJSON_GetObjectItem(f32ref, "p99_rel_diff")->valuedouble;
    assert_true(cJSON_GetObjectItem(f32ref, "top1_agreement")->valuedouble == 1.0);
    assert_true(p99_vs_f32 > p99v);
    assert_true(cJSON_GetObjectItem(tb, "total_mem_bytes")->valuedouble > 0);
    /* what the backend resolved: the defaults here */
    const cJSON *st = cJSON_GetObjectItem(tb, "settings");
    assert_non_null(st);
    assert_string_equal(cJSON_GetObjectItem(st, "decode_kernels")->valuestring, "v8");
    assert_string_equal(cJSON_GetObjectItem(st, "kv_cache")->valuestring, "fp16");
    assert_non_null(cJSON_GetObjectItem(st, "prefill")->valuestring);
    assert_string_not_equal(cJSON_GetObjectItem(st, "prefill")->valuestring, "v1");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(st, "graph")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(st, "lookahead")));
    cJSON_Delete(j);
    j = NULL;
    cli_result_free(&r);
    /* thresholds below the measured difference fail the run */
    snprintf(args, sizeof args, "-m '%s' -n 16 --max-p99 0", model);
    r = run(NULL, args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "FAIL");
    cli_result_free(&r);
    snprintf(args, sizeof args, "-m '%s' -n 16 --max-kl 0", model);
    r = run(NULL, args);
    assert_int_equal(r.rc, 1);
    ASSERT_CONTAINS(r.err, "FAIL");
    cli_result_free(&r);
    snprintf(args, sizeof args, "-m '%s' -n 16 --max-p99 0.01 --max-kl 0.001", model);
    r = run(NULL, args);
    assert_int_equal(r.rc, 0);
    cli_result_free(&r);
    /* an fp32 KV cache: closer to the reference than the fp16 one */
    char json32[512];
    snprintf(json32, sizeof json32, "%s/gpu32.json", tmp);
    snprintf(args, sizeof args, "-m '%s' -n 64 --gpu-kv f32 --json '%s'", model, json32);
    r = run("GRETA_GPU_KERNELS=v5 GRETA_GPU_PREFILL=v1 GRETA_GPU_GRAPH=0", args); /* the fp32 configuration */
    assert_int_equal(r.rc, 0);
    cli_result_free(&r);
    j = cli_read_json(json32);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "test_backend"), "kv_cache")->valuestring, "fp32");
    st = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "test_backend"), "settings");
    assert_string_equal(cJSON_GetObjectItem(st, "decode_kernels")->valuestring, "v5");
    assert_string_equal(cJSON_GetObjectItem(st, "prefill")->valuestring, "v1");
    assert_string_equal(cJSON_GetObjectItem(st, "kv_cache")->valuestring, "fp32");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(st, "graph")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(st, "lookahead")));
    assert_string_equal(cJSON_GetObjectItem(j, "ref_kv")->valuestring, "fp32"); /* follows --gpu-kv */
    assert_null(cJSON_GetObjectItem(j, "fp32_reference"));
    const double p99_32 = summary_num(j, "p99_rel_diff");
    print_message("stories260K parity p99 |d|/sd: GPU fp16 KV vs fp16-KV ref %.3g, vs fp32 ref %.3g; "
                  "GPU fp32 KV vs fp32 ref %.3g\n",
                  p99v, p99_vs_f32, p99_32);
    assert_true(p99_32 < p99_vs_f32);
    cJSON_Delete(j);
    /* a quantized fixture with grouped-query attention */
    const char *q = greta_testdata_find("quant/gqa-Q4_K_M.gguf");
    if (q) {
        snprintf(args, sizeof args, "-m '%s' -p 'The dog ran to the' -n 16", q);
        r = run(NULL, args);
        if (r.rc != 0)
            fail_msg("parity gqa-Q4_K_M failed (%d):\n%s", r.rc, r.err);
        cli_result_free(&r);
    }
}

static int setup(void **state)
{
    const char *m = greta_testdata_find("stories260K.gguf");
    if (m)
        snprintf(model, sizeof model, "%s", m);
    snprintf(tmp, sizeof tmp, "/tmp/greta-parity-cli-XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

/* argv[2]: "cpu" runs the parts that need no GPU, "gpu" the GPU part (two
 * ctest entries, so a skipped GPU half never hides the CPU half). */
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
    };
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_gpu_parity),
    };
    if (!strcmp(argv[2], "cpu"))
        return cmocka_run_group_tests(cpu_tests, setup, NULL);
    return cmocka_run_group_tests(gpu_tests, setup, NULL);
}
