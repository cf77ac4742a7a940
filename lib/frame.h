/* frame.h - separator framing of the echo protocol, shared by the echo plugin and the client. */
#ifndef ES_FRAME_H
#define ES_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FRAME_SEP_MAX 64

/* A separator and how far the current frame has been scanned. */
typedef struct frame_scan {
    const uint8_t *sep; /* borrowed: must outlive the scanner */
    size_t sep_len;     /* >= 1 */
    size_t scanned;  /* bytes of the current frame already searched */
} frame_scan;

/* Find the end of the next frame in data[0..len), which must start at the
 * frame's first byte and extend, between calls that returned 0, the data of
 * the previous call. Returns the frame's length including the separator, or
 * 0 if the separator is not there yet. Each byte is searched once (plus
 * sep_len - 1 bytes of overlap), so the cost stays linear in the frame size.
 * Any thread; the scanner belongs to one connection. */
size_t frame_next(frame_scan *fs, const uint8_t *data, size_t len);

/* After frame_next(fs, data, len) returned 0: how many of data's bytes may
 * leave the frame now (cut-through), keeping only a tail that could be the
 * start of the separator. fs is moved on as if the frame now started at
 * data + the returned count. */
size_t frame_pass(frame_scan *fs, const uint8_t *data, size_t len);

/* Decode C-style escapes (\r \n \t \0 \\ \" \' \a \b \f \v \e \xHH \NNN octal)
 * from text into out (at most cap bytes). Returns the decoded length, or -1
 * with a message in err (at most errlen bytes) for a bad escape or
 * overflow. Any thread. */
ssize_t unescape(const char *text, uint8_t *out, size_t cap, char *err, size_t errlen);

#endif
