/* batch_journal.h - the journal that makes `greta batch` resumable.
 *
 * File OUT.journal next to the output (text, one JSON object per line, each
 * line written with a single write(2) on an O_APPEND descriptor):
 *   {"greta_batch_journal": 1, "job": "<job key>"}      first line
 *   {"line": N, "rid": "<16 hex>"}                     before request N is submitted
 *   {"line": N, "out": "<the output line, as a JSON string>"}   request N answered
 * N is the 1-based input line. The job key names the input (size and hash of
 * its bytes) and the model; a journal with another key belongs to another
 * job and is refused (GRETA_ERR_STATE), so a changed input is never mixed
 * with old answers. On open, a torn last line (the process was killed in the
 * middle of a write) is cut off; a damaged line elsewhere is skipped and
 * counted. The last record of a line wins.
 *
 * Rerunning after a crash: lines with "out" are done and are not sent again;
 * lines with only "rid" were in flight: their request id is reused, so a
 * request that still runs in the instance is found again (Submit of the same
 * id returns its slot) instead of being computed twice.
 *
 * The caller writes the output file from the journal (in input order) at the
 * end and then removes the journal. All calls are thread-safe.
 */
#ifndef GRETA_FRONTEND_BATCH_JOURNAL_H
#define GRETA_FRONTEND_BATCH_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct greta_batch_journal greta_batch_journal;

/* Opens (and loads) or creates the journal at path for a job of n_lines
 * input lines. *resumed: 1 when an existing journal was loaded. */
int greta_batch_journal_open(const char *path, const char *job_key, size_t n_lines, greta_batch_journal **out,
                             int *resumed, greta_error *err);
void greta_batch_journal_close(greta_batch_journal **j);

/* Request id recorded for line (0: none). */
uint64_t greta_batch_journal_rid(greta_batch_journal *j, size_t line);
/* Output line recorded for line (NULL: not answered yet). Stays valid until close. */
const char *greta_batch_journal_output(greta_batch_journal *j, size_t line);
/* Lines answered so far. */
size_t greta_batch_journal_done_count(greta_batch_journal *j);
/* Damaged lines skipped at open (torn last line not counted). */
size_t greta_batch_journal_skipped(greta_batch_journal *j);

int greta_batch_journal_submit(greta_batch_journal *j, size_t line, uint64_t rid, greta_error *err);
/* Records the answer of line (out: one JSON line without newline). */
int greta_batch_journal_done(greta_batch_journal *j, size_t line, const char *out, greta_error *err);

#endif
