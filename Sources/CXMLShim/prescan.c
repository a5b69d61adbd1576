/* Byte pre-scan run before libxml2 sees the bytes: libxml2 2.9.14 checks duplicate attributes in O(n^2), so a
 * start tag with 10^5 attributes takes ~20 s. Counting '=' outside quotes inside a start tag bounds that in O(n).
 * Comments, CDATA sections, processing instructions and declarations are skipped so their content never counts.
 *
 * The scan runs over every byte of every document, so it jumps with memchr and a class table instead of looking
 * at bytes one by one where it can (about 1 instruction per byte; a byte-by-byte switch cost 24). */
#include "shim_internal.h"
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum {
    S_TEXT, S_LT, S_BANG, S_BANG_DASH, S_COMMENT, S_CDATA, S_PI, S_DECL, S_TAG, S_TAG_DQ, S_TAG_SQ, S_END_TAG
};

/* Bytes that end a run inside a start tag. */
static const unsigned char tag_special[256] = {
    ['>'] = 1, ['"'] = 1, ['\''] = 1, ['='] = 1,
};

/* Index of the first byte at or after `i` that ends a run inside a start tag, or `length`. */
static size_t skip_tag_run(const unsigned char *bytes, size_t i, size_t length) {
#if defined(__SSE2__)
    const __m128i gt = _mm_set1_epi8('>'), dq = _mm_set1_epi8('"'), sq = _mm_set1_epi8('\''), eq = _mm_set1_epi8('=');
    while (i + 16 <= length) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(bytes + i));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, gt), _mm_cmpeq_epi8(v, dq)),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, sq), _mm_cmpeq_epi8(v, eq)));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask != 0) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#endif
    while (i < length && !tag_special[bytes[i]]) i++;
    return i;
}

void axs_prescan_init(axs_prescan *scan, int32_t max_attributes) {
    memset(scan, 0, sizeof *scan);
    scan->state = S_TEXT;
    scan->limit = max_attributes;
}

/* The byte `back` positions before `pos`, reaching into the previous chunk's last two bytes when needed. */
static unsigned char byte_before(const axs_prescan *s, const unsigned char *bytes, size_t pos, size_t back) {
    if (pos >= back) return bytes[pos - back];
    return back - pos == 1 ? s->last1 : s->last2;
}

/* Skips to just after the '>' that closes a comment ("-->"), CDATA section ("]]>") or PI ("?>"): a '>' preceded
 * by `count` copies of `before`. Returns `length` when the close is not in this chunk. */
static size_t find_close(axs_prescan *s, const unsigned char *bytes, size_t i, size_t length, unsigned char before,
                         size_t count) {
    while (i < length) {
        const unsigned char *gt = memchr(bytes + i, '>', length - i);
        if (gt == NULL) return length;
        size_t at = (size_t)(gt - bytes);
        int closes = byte_before(s, bytes, at, 1) == before && (count == 1 || byte_before(s, bytes, at, 2) == before);
        i = at + 1;
        if (closes) {
            s->state = S_TEXT;
            return i;
        }
    }
    return length;
}

static size_t scan(axs_prescan *s, const unsigned char *bytes, size_t length);

size_t axs_prescan_run(axs_prescan *s, const unsigned char *bytes, size_t length) {
    size_t safe = scan(s, bytes, length);
    if (length >= 2) {
        s->last2 = bytes[length - 2];
        s->last1 = bytes[length - 1];
    } else if (length == 1) {
        s->last2 = s->last1;
        s->last1 = bytes[0];
    }
    s->tag_started_here = 0;
    return safe;
}

static size_t scan(axs_prescan *s, const unsigned char *bytes, size_t length) {
    size_t i = 0;
    while (i < length) {
        switch (s->state) {
        case S_TEXT: {
            const unsigned char *lt = memchr(bytes + i, '<', length - i);
            if (lt == NULL) return length;
            i = (size_t)(lt - bytes) + 1;
            s->tag_start = i - 1;
            s->tag_started_here = 1;
            s->state = S_LT;
            break;
        }
        case S_LT: {
            unsigned char c = bytes[i++];
            if (c == '!') s->state = S_BANG;
            else if (c == '?') s->state = S_PI;
            else if (c == '/') s->state = S_END_TAG;
            else { s->state = S_TAG; s->attributes = 0; }
            break;
        }
        case S_BANG: {
            unsigned char c = bytes[i++];
            if (c == '-') s->state = S_BANG_DASH;
            else if (c == '[') s->state = S_CDATA;
            else s->state = S_DECL;
            break;
        }
        case S_BANG_DASH:
            s->state = bytes[i++] == '-' ? S_COMMENT : S_DECL;
            break;
        case S_COMMENT:
            i = find_close(s, bytes, i, length, '-', 2);
            break;
        case S_CDATA:
            i = find_close(s, bytes, i, length, ']', 2);
            break;
        case S_PI:
            i = find_close(s, bytes, i, length, '?', 1);
            break;
        case S_DECL:
        case S_END_TAG: {
            const unsigned char *gt = memchr(bytes + i, '>', length - i);
            if (gt == NULL) return length;
            i = (size_t)(gt - bytes) + 1;
            s->state = S_TEXT;
            break;
        }
        case S_TAG: {
            i = skip_tag_run(bytes, i, length);
            if (i == length) return length;
            unsigned char c = bytes[i++];
            if (c == '>') s->state = S_TEXT;
            else if (c == '"') s->state = S_TAG_DQ;
            else if (c == '\'') s->state = S_TAG_SQ;
            else if (s->limit > 0 && ++s->attributes > s->limit) {
                /* Stop at the '<' of this tag when it began in this chunk, so the parser stands there. */
                return s->tag_started_here ? s->tag_start : i - 1;
            }
            break;
        }
        case S_TAG_DQ:
        case S_TAG_SQ: {
            const unsigned char *q = memchr(bytes + i, s->state == S_TAG_DQ ? '"' : '\'', length - i);
            if (q == NULL) return length;
            i = (size_t)(q - bytes) + 1;
            s->state = S_TAG;
            break;
        }
        default:
            return length;
        }
    }
    return length;
}
