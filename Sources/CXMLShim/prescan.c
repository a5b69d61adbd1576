/* Byte pre-scan run before libxml2 sees the bytes: libxml2 2.9.14 checks duplicate attributes in O(n^2), so a
 * start tag with 10^5 attributes takes ~20 s. Counting '=' outside quotes inside a start tag bounds that in O(n).
 * Comments, CDATA sections, processing instructions and declarations are skipped so their content never counts. */
#include "shim_internal.h"

enum {
    S_TEXT, S_LT, S_BANG, S_BANG_DASH, S_BANG_BRACKET, S_COMMENT, S_CDATA, S_PI, S_DECL,
    S_TAG, S_TAG_DQ, S_TAG_SQ, S_END_TAG
};

void axs_prescan_init(axs_prescan *scan, int32_t max_attributes) {
    scan->state = S_TEXT;
    scan->marker = 0;
    scan->attributes = 0;
    scan->limit = max_attributes;
    scan->line = 1;
    scan->column = 1;
    scan->tag_line = 0;
    scan->tag_column = 0;
}

size_t axs_prescan_run(axs_prescan *s, const unsigned char *bytes, size_t length) {
    int state = s->state;
    int marker = s->marker;
    long line = s->line, column = s->column;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = bytes[i];
        if (c == '\n') { line++; column = 0; }
        column++;
        switch (state) {
        case S_TEXT:
            if (c == '<') { state = S_LT; s->tag_line = line; s->tag_column = column - 1; }
            break;
        case S_LT:
            if (c == '!') state = S_BANG;
            else if (c == '?') { state = S_PI; marker = 0; }
            else if (c == '/') state = S_END_TAG;
            else { state = S_TAG; s->attributes = 0; }
            break;
        case S_BANG:
            if (c == '-') state = S_BANG_DASH;
            else if (c == '[') { state = S_CDATA; marker = 0; }
            else state = S_DECL;
            break;
        case S_BANG_DASH:
            state = (c == '-') ? S_COMMENT : S_DECL;
            marker = 0;
            break;
        case S_COMMENT:
            if (c == '>' && marker >= 2) state = S_TEXT;
            else marker = (c == '-') ? marker + 1 : 0;
            break;
        case S_CDATA:
            if (c == '>' && marker >= 2) state = S_TEXT;
            else marker = (c == ']') ? marker + 1 : 0;
            break;
        case S_PI:
            if (c == '>' && marker) state = S_TEXT;
            else marker = (c == '?');
            break;
        case S_DECL:
        case S_END_TAG:
            if (c == '>') state = S_TEXT;
            break;
        case S_TAG:
            if (c == '>') state = S_TEXT;
            else if (c == '"') state = S_TAG_DQ;
            else if (c == '\'') state = S_TAG_SQ;
            else if (c == '=') {
                if (s->limit > 0 && ++s->attributes > s->limit) {
                    s->state = state; s->marker = marker; s->line = line; s->column = column;
                    return i;
                }
            }
            break;
        case S_TAG_DQ:
            if (c == '"') state = S_TAG;
            break;
        case S_TAG_SQ:
            if (c == '\'') state = S_TAG;
            break;
        default:
            break;
        }
    }
    s->state = state; s->marker = marker; s->line = line; s->column = column;
    return length;
}
