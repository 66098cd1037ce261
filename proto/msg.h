/* msg.h - packing and checked unpacking of the control messages.
 *
 * Every ZeroMQ payload is one greta.Envelope (proto/greta.proto, generated
 * into the build tree as greta.pb-c.h). Unpacking is the only way stages read
 * a message, and it refuses, with a message naming what is wrong:
 *   - payloads larger than GRETA_MSG_MAX bytes ("oversized"),
 *   - bytes that are not a valid Envelope (malformed or truncated protobuf),
 *   - a protocol version other than GRETA_PROTO_VERSION,
 *   - an envelope without a body, or a body whose fields break the documented
 *     limits (e.g. Submit.max_tokens <= 0, a stop string over 63 bytes, a
 *     penalty outside [-2, 2], more than 64 logit-bias entries or a NaN bias,
 *     StepDone with different numbers of slots and tokens, a request message
 *     with request_id 0).
 * What depends on a stage's state (slot < n_slots, token < vocab size,
 * unknown request id) is checked by the stage.
 *
 * Usage:
 *   Greta__Envelope env; Greta__Ack ack = GRETA__ACK__INIT;
 *   greta_msg_init(&env, request_id);
 *   env.body_case = GRETA__ENVELOPE__BODY_ACK; env.ack = &ack;
 *   greta_msg_pack(&env, &buf, &len, &err);  ... free(buf);
 *
 *   Greta__Envelope *in = NULL; uint64_t rid = 0;
 *   if (greta_msg_unpack(data, len, &in, &rid, &err) < 0) reply_error(rid, &err);
 *   ... greta_msg_free(&in);
 */
#ifndef GRETA_PROTO_MSG_H
#define GRETA_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "greta.pb-c.h"

#define GRETA_PROTO_VERSION 1u

/* Largest accepted payload, bytes. Larger ones get an "oversized" error. */
#define GRETA_MSG_MAX (1u << 20)

/* Limits checked by greta_msg_unpack (documented in docs/PROTOCOL.md). */
#define GRETA_MSG_MAX_CLIENT_ID 31   /* Submit.client bytes */
#define GRETA_MSG_MAX_STOP 4         /* Submit.stop strings */
#define GRETA_MSG_MAX_STOP_LEN 63    /* bytes per stop string */
#define GRETA_MSG_MAX_SLOTS 1024     /* StepReady/StepDone.slots */
#define GRETA_MSG_MAX_CHAT 256       /* Encode.messages */
#define GRETA_MSG_MAX_BIAS 64        /* SamplingParams.logit_bias entries (= GRETA_SAMPLER_MAX_BIAS) */
#define GRETA_MSG_MAX_PENALTY 2.0f   /* |frequency_penalty|, |presence_penalty| (= GRETA_SAMPLER_MAX_FREQ_PENALTY) */
#define GRETA_MSG_MAX_HANDOFF_SAMPLES 4096 /* Stats.handoff_ns */

/* Zeroes env and sets the version and request id (no body). */
void greta_msg_init(Greta__Envelope *env, uint64_t request_id);

/* Packs env into a malloc'ed buffer (*out, *out_len). Refuses an envelope
 * without body, with a version other than GRETA_PROTO_VERSION, or that packs to
 * more than GRETA_MSG_MAX bytes. */
int greta_msg_pack(const Greta__Envelope *env, uint8_t **out, size_t *out_len, greta_error *err);

/* Unpacks and validates len bytes (see the top of this file). On success *out
 * owns a message to release with greta_msg_free. On failure *out is NULL and,
 * when the protobuf itself decoded, *request_id (if not NULL) holds its request
 * id so the caller can address an error reply; otherwise 0. */
int greta_msg_unpack(const void *data, size_t len, Greta__Envelope **out, uint64_t *request_id,
                     greta_error *err);

void greta_msg_free(Greta__Envelope **env);

/* Name of a body case ("submit", "text_delta", ...; "none" when unset). */
const char *greta_msg_body_name(int body_case);

/* A ProtobufCBinaryData viewing a NUL-terminated string (no copy). */
ProtobufCBinaryData greta_msg_bytes(const char *s);

/* Copies a bytes field into buf as a NUL-terminated string (truncating to
 * n-1 bytes); returns buf. */
char *greta_msg_cstr(ProtobufCBinaryData b, char *buf, size_t n);

#endif
