/* utf8.h - UTF-8 helpers for text that leaves the process as JSON. */
#ifndef GRETA_UTF8_H
#define GRETA_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence starting at s (n bytes available):
 * 1..4, or 0 when the bytes there are not valid UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
size_t greta_utf8_seq_len(const unsigned char *s, size_t n);

/* Copies n bytes of s into a malloc'ed NUL-terminated string in which every
 * byte that does not belong to a valid UTF-8 sequence, and every NUL, is
 * replaced by U+FFFD. NULL when out of memory. */
char *greta_utf8_sanitize(const char *s, size_t n);

#endif
