/* One document: push parser + SAX callbacks + the schema validator plugged in at the root element.
 *
 * Why this shape (measured with libxml2 2.9.14, see Docs/design.md):
 *  - push parser + xmlSchemaSAXPlug is the fastest path and never builds a tree; we feed it from our own reads;
 *  - the schema is chosen by the root element, so the validator is plugged in when the root start tag arrives and
 *    the root event is replayed through the plugged handler;
 *  - the push parser enforces neither the depth limit nor the text-node limit, so the callbacks do;
 *  - any DOCTYPE stops the parse: no entity, DTD or parameter-entity trick can run;
 *  - stopping never calls xmlStopParser() from a callback (it crashes 2.9.14 inside characters()).
 */
#include "shim_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { MAX_CHILD_NAMES_PER_LEVEL = 256, HEAD_SIZE = 512 };
enum { MAX_CAPTURES = 8, MAX_CAPTURE_STEPS = 16, CAPTURE_BYTES = 256 };
enum { CAPTURE_SEARCHING = 0, CAPTURE_READING = 1, CAPTURE_DONE = 2 };

/* The paths of a capture set, parsed once and shared read-only by every document that uses them. */
struct axs_capture_set {
    int count;
    int step_count[MAX_CAPTURES];
    char *steps[MAX_CAPTURES][MAX_CAPTURE_STEPS];
};

/* One element whose text is wanted, in one document. `matched` counts the leading steps matched by the open
 * elements. */
typedef struct {
    int matched;
    int state;
    int depth;                 /* depth of the element being read */
    int overflow;
    size_t length;
    char value[CAPTURE_BYTES + 1];
} capture;

typedef struct {
    const xmlChar *local;    /* interned in the parser's dictionary: pointer equality is name equality */
    const xmlChar *uri;
    int count;
} child_count;

typedef struct {
    const xmlChar *local;
    const xmlChar *prefix;
    const xmlChar *uri;
    int index;                /* 1-based position among same-named siblings */
    child_count *children;
    int child_names;
    int child_capacity;
} level;

struct axs_doc {
    xmlParserCtxtPtr parser;
    xmlSchemaValidCtxtPtr validator;
    xmlSchemaSAXPlugPtr plug;
    axs_limits limits;
    axs_select_fn select;
    axs_diagnostic_fn on_diagnostic;
    void *context;
    char *name;

    level *levels;            /* levels[0] is the root */
    int depth;
    int level_capacity;
    int pending_pop;          /* an end tag whose pop waits until its validity errors are reported */
    int replaying_root;
    int root_seen;
    int64_t text_bytes;

    const axs_capture_set *capture_set;
    capture captures[MAX_CAPTURES];
    int capture_count;
    int capturing;             /* captures in state CAPTURE_READING */
    int captures_open;         /* captures not yet CAPTURE_DONE: when 0, elements skip the capture work */

    /* code lists (see codes_start): observations to check after the pass */
    int collect_codes;
    const axs_schema *schema;
    int candidate_depth;            /* the latest element carrying listURI/listVersionID, and what it said */
    char candidate_uri[512];
    char candidate_version[128];
    int reading_code;               /* inside a code (or kennung) element: its text is collected */
    int reading_depth;
    int reading_kind;
    char reading_uri[512];
    char reading_version[128];
    int reading_has_version;
    long reading_line, reading_column;
    char reading_path[1024];
    char reading_value[257];
    size_t reading_length;
    int reading_overflow;
    axs_code_observation *observations;   /* strings in one malloc'd block per observation */
    int observation_count, observation_capacity, observations_dropped;

    axs_prescan scan;
    unsigned char head[HEAD_SIZE];   /* the first bytes, held back until the start of the document is checked */
    size_t head_length;
    int head_done;
    int finishing;
    int unwinding;             /* closing what a cut-off document left open: findings are not reported */
    int64_t started_ms;        /* monotonic clock at the first byte; 0 before */
    unsigned elements;
    int64_t bytes;
    int stopped;
    int well_formed;
    int schema_applied;
    int64_t errors;
    int reported;
    int truncated;
    int encoding_reported;     /* an encoding finding from a stray message (on_stray_message) is made once */
    const char *last_code;
    char last_message[512];
    char last_path[512];
};

void axs_on_parser_error(void *data, axs_error error);
static void on_validity_error(void *data, axs_error error);

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- helpers ------------------------------------------------------------------------------------------------ */

static void stop(axs_doc *d) {
    d->stopped = 1;
    if (d->parser == NULL) return;
#if LIBXML_VERSION >= 21400
    /* Since 2.14 xmlStopParser only sets flags (disableSAX = 2), so it is safe inside a callback. */
    xmlStopParser(d->parser);
#else
    /* xmlStopParser() resets the input under the caller in 2.9 and 2.12 (SIGSEGV inside characters()): set what
     * it sets for stopping, without touching the input. */
    d->parser->disableSAX = 1;
    d->parser->instate = XML_PARSER_EOF;
#endif
}

/* The parser's position, through the public SAX2 accessors (0 when unknown). */
static void current_position(axs_doc *d, long *line, long *column) {
    *line = d->parser != NULL ? xmlSAX2GetLineNumber(d->parser) : 0;
    *column = d->parser != NULL ? xmlSAX2GetColumnNumber(d->parser) : 0;
}

/* Appends `text` to out[*used..size-1], cutting at the end; out stays NUL-terminated. */
static void append_text(char *out, size_t size, size_t *used, const char *text) {
    size_t room = size - 1 - *used;
    size_t n = strlen(text);
    if (n > room) n = room;
    memcpy(out + *used, text, n);
    *used += n;
    out[*used] = '\0';
}

/* The element path, e.g. /p:a/p:b[2]/c (without snprintf: it runs for every code element when code lists are on). */
static void build_path(axs_doc *d, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < d->depth && used + 1 < size; i++) {
        const level *l = &d->levels[i];
        append_text(out, size, &used, "/");
        if (l->prefix != NULL) {
            append_text(out, size, &used, (const char *)l->prefix);
            append_text(out, size, &used, ":");
        }
        append_text(out, size, &used, (const char *)l->local);
        if (l->index > 1) {
            char digits[16];
            int n = 0;
            for (unsigned v = (unsigned)l->index; v > 0 && n < 15; v /= 10) digits[n++] = (char)('0' + v % 10);
            char bracket[20];
            int k = 0;
            bracket[k++] = '[';
            while (n > 0) bracket[k++] = digits[--n];
            bracket[k++] = ']';
            bracket[k] = '\0';
            append_text(out, size, &used, bracket);
        }
    }
}

static void emit(axs_doc *d, int severity, const char *code, long line, long column, const char *raw_message) {
    if (d->unwinding) return;
    if (severity != AXS_SEVERITY_WARNING) d->errors++;
    char message[2048];
    snprintf(message, sizeof message, "%s", raw_message != NULL ? raw_message : "");
    size_t n = strlen(message);
    while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r' || message[n - 1] == ' ')) message[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (message[i] == '\n' || message[i] == '\r') message[i] = ' ';   /* one finding, one line */
    char path[1024];
    build_path(d, path, sizeof path);

    /* libxml2 repeats a validity error once per text chunk: report a finding once per element. */
    if (d->last_code == code && strncmp(d->last_message, message, sizeof d->last_message - 1) == 0 &&
        strncmp(d->last_path, path, sizeof d->last_path - 1) == 0)
        return;
    d->last_code = code;
    snprintf(d->last_message, sizeof d->last_message, "%s", message);
    snprintf(d->last_path, sizeof d->last_path, "%s", path);

    if (d->limits.max_diagnostics > 0 && d->reported >= d->limits.max_diagnostics) {
        if (!d->truncated) {
            d->truncated = 1;
            char note[160];
            snprintf(note, sizeof note, "more than %d findings; the rest of this document's findings are not listed",
                     d->limits.max_diagnostics);
            axs_diagnostic t = { AXS_SEVERITY_WARNING, "report.truncated", line, column, d->name, path, note };
            if (d->on_diagnostic) d->on_diagnostic(d->context, &t);
        }
        return;
    }
    d->reported++;
    axs_diagnostic diag = { severity, code, line, column, d->name, path, message };
    if (d->on_diagnostic) d->on_diagnostic(d->context, &diag);
}

static void emit_here(axs_doc *d, int severity, const char *code, const char *message) {
    long line, column;
    current_position(d, &line, &column);
    emit(d, severity, code, line, column, message);
}

/* Refuses the document here: a fatal finding at the parser's position, and no more reading. */
static void refuse_here(axs_doc *d, const char *code, const char *message) {
    emit_here(d, AXS_SEVERITY_FATAL, code, message);
    d->well_formed = 0;
    stop(d);
}

/* Stops the document when it has taken longer than its time limit. Returns 1 when it stopped. */
static int check_time(axs_doc *d) {
    if (d->limits.max_milliseconds <= 0 || d->started_ms == 0 || d->stopped) return 0;
    int64_t elapsed = now_ms() - d->started_ms;
    if (elapsed <= d->limits.max_milliseconds) return 0;
    char message[160];
    snprintf(message, sizeof message, "validation took longer than the limit of %lld ms; the rest was not read",
             (long long)d->limits.max_milliseconds);
    refuse_here(d, "input.timeout", message);
    return 1;
}

static void apply_pending_pop(axs_doc *d) {
    if (d->pending_pop) {
        d->pending_pop = 0;
        if (d->depth > 0) d->depth--;
    }
}

static int push_level(axs_doc *d, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri) {
    if (d->depth >= d->level_capacity) {
        int capacity = d->level_capacity ? d->level_capacity * 2 : 32;
        level *grown = realloc(d->levels, (size_t)capacity * sizeof *grown);
        if (grown == NULL) return -1;
        memset(grown + d->level_capacity, 0, (size_t)(capacity - d->level_capacity) * sizeof *grown);
        d->levels = grown;
        d->level_capacity = capacity;
    }
    int index = 1;
    if (d->depth > 0) {
        level *parent = &d->levels[d->depth - 1];
        int found = 0;
        for (int i = 0; i < parent->child_names; i++) {
            child_count *c = &parent->children[i];
            if (c->local == local && c->uri == uri) { index = ++c->count; found = 1; break; }
        }
        /* Beyond MAX_CHILD_NAMES_PER_LEVEL distinct names the position is not tracked (index stays 1), so a
         * hostile document with a million distinct sibling names cannot make this quadratic. */
        if (!found && parent->child_names < MAX_CHILD_NAMES_PER_LEVEL) {
            if (parent->child_names >= parent->child_capacity) {
                int capacity = parent->child_capacity ? parent->child_capacity * 2 : 8;
                child_count *grown = realloc(parent->children, (size_t)capacity * sizeof *grown);
                if (grown == NULL) return -1;
                parent->children = grown;
                parent->child_capacity = capacity;
            }
            parent->children[parent->child_names++] = (child_count){ local, uri, 1 };
        }
    }
    level *l = &d->levels[d->depth++];
    l->local = local;
    l->prefix = prefix;
    l->uri = uri;
    l->index = index;
    l->child_names = 0;      /* keeps the allocation for reuse */
    return 0;
}

/* ---- code observations -------------------------------------------------------------------------------------- */

#define MAX_OBSERVATIONS 100000

static void copy_value(char *out, size_t size, const xmlChar *begin, const xmlChar *end) {
    size_t n = (size_t)(end - begin);
    if (n >= size) n = size - 1;
    memcpy(out, begin, n);
    out[n] = '\0';
}

/* XÖV code types: an element with a `code` child and listURI/listVersionID, given on the element or
 * fixed by the schema. Also the Behördenkennung of leser/autor (kennung), for the DVDV prefix check. */
static void codes_start(axs_doc *d, const xmlChar *localname, int nb_attributes, const xmlChar **attributes) {
    if (d->reading_code) return;    /* markup inside a code: the schema reports it */
    const level *parent = &d->levels[d->depth - 2];
    int kind = -1;
    const char *list_uri = NULL, *list_version = NULL;
    /* XÖV's xoev-code has an unqualified `code`; schemas with elementFormDefault="qualified" qualify it: any
     * namespace counts. */
    if (strcmp((const char *)localname, "code") == 0) {
        if (d->candidate_depth == d->depth - 1) {
            if (d->candidate_uri[0]) list_uri = d->candidate_uri;
            if (d->candidate_version[0]) list_version = d->candidate_version;
        }
        if (list_uri == NULL || list_version == NULL) {
            const axs_code_fixed *fixed = axs_schema_fixed_code(d->schema, parent->uri ? (const char *)parent->uri : "",
                                                               (const char *)parent->local);
            if (fixed != NULL) {
                if (list_uri == NULL) list_uri = fixed->uri;
                if (list_version == NULL) list_version = fixed->version;
            }
        }
        if (list_uri != NULL) kind = AXS_CODE_VALUE;
    } else if (strcmp((const char *)localname, "kennung") == 0 &&
               (strcmp((const char *)parent->local, "leser") == 0 || strcmp((const char *)parent->local, "autor") == 0)) {
        kind = AXS_CODE_BEHOERDENKENNUNG;
    }
    if (kind >= 0) {
        d->reading_code = 1;
        d->reading_kind = kind;
        d->reading_depth = d->depth;
        size_t used = 0;
        d->reading_uri[0] = d->reading_version[0] = '\0';
        append_text(d->reading_uri, sizeof d->reading_uri, &used, list_uri ? list_uri : "");
        used = 0;
        append_text(d->reading_version, sizeof d->reading_version, &used, list_version ? list_version : "");
        d->reading_has_version = list_version != NULL;
        current_position(d, &d->reading_line, &d->reading_column);
        build_path(d, d->reading_path, sizeof d->reading_path);
        d->reading_length = 0;
        d->reading_overflow = 0;
        return;
    }
    d->candidate_depth = 0;
    d->candidate_uri[0] = d->candidate_version[0] = '\0';
    for (int i = 0; i < nb_attributes; i++) {
        if (attributes[i * 5 + 2] != NULL) continue;
        const char *name = (const char *)attributes[i * 5];
        if (strcmp(name, "listURI") == 0)
            copy_value(d->candidate_uri, sizeof d->candidate_uri, attributes[i * 5 + 3], attributes[i * 5 + 4]);
        else if (strcmp(name, "listVersionID") == 0)
            copy_value(d->candidate_version, sizeof d->candidate_version, attributes[i * 5 + 3], attributes[i * 5 + 4]);
        else continue;
        d->candidate_depth = d->depth;
    }
}

static void codes_text(axs_doc *d, const xmlChar *text, int length) {
    size_t room = sizeof d->reading_value - 1 - d->reading_length;
    size_t n = (size_t)length;
    if (n > room) { n = room; d->reading_overflow = 1; }
    memcpy(d->reading_value + d->reading_length, text, n);
    d->reading_length += n;
}

static void codes_end(axs_doc *d) {
    d->reading_code = 0;
    if (d->unwinding || d->stopped) return;
    if (d->observation_count >= MAX_OBSERVATIONS) { d->observations_dropped++; return; }
    d->reading_value[d->reading_length] = '\0';
    char *value = d->reading_value;
    while (*value == ' ' || *value == '\t' || *value == '\n' || *value == '\r') value++;
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\n' || value[n - 1] == '\r')) n--;
    value[n] = '\0';
    if (d->observation_count == d->observation_capacity) {
        int capacity = d->observation_capacity ? d->observation_capacity * 2 : 16;
        axs_code_observation *grown = realloc(d->observations, (size_t)capacity * sizeof *grown);
        if (grown == NULL) { d->observations_dropped++; return; }
        d->observations = grown;
        d->observation_capacity = capacity;
    }
    size_t uri_size = strlen(d->reading_uri) + 1, version_size = strlen(d->reading_version) + 1;
    size_t value_size = n + 1, path_size = strlen(d->reading_path) + 1;
    char *block = malloc(uri_size + version_size + value_size + path_size);
    if (block == NULL) { d->observations_dropped++; return; }
    axs_code_observation *o = &d->observations[d->observation_count++];
    o->kind = d->reading_kind;
    o->list_uri = memcpy(block, d->reading_uri, uri_size);
    o->list_version = d->reading_has_version ? memcpy(block + uri_size, d->reading_version, version_size) : NULL;
    if (o->list_version == NULL) block[uri_size] = '\0';
    o->value = memcpy(block + uri_size + version_size, value, value_size);
    o->path = memcpy(block + uri_size + version_size + value_size, d->reading_path, path_size);
    o->value_too_long = d->reading_overflow;
    o->line = d->reading_line;
    o->column = d->reading_column;
}

void axs_doc_collect_codes(axs_doc *d, int on) { if (d != NULL) d->collect_codes = on; }
int axs_doc_code_count(const axs_doc *d) { return d != NULL ? d->observation_count : 0; }
int axs_doc_codes_dropped(const axs_doc *d) { return d != NULL ? d->observations_dropped : 0; }

int axs_doc_code_at(const axs_doc *d, int index, axs_code_observation *out) {
    if (d == NULL || index < 0 || index >= d->observation_count) return 0;
    *out = d->observations[index];
    return 1;
}

/* ---- captures ----------------------------------------------------------------------------------------------- */

static void capture_start(axs_doc *d, const xmlChar *localname) {
    int step = d->depth - 2;   /* the root is depth 1; its children match step 0 */
    for (int i = 0; i < d->capture_count; i++) {
        capture *c = &d->captures[i];
        int steps = d->capture_set->step_count[i];
        if (c->state != CAPTURE_SEARCHING || c->matched != step || step >= steps) continue;
        if (strcmp((const char *)localname, d->capture_set->steps[i][step]) != 0) continue;
        c->matched = step + 1;
        if (c->matched == steps) {
            c->state = CAPTURE_READING;
            c->depth = d->depth;
            d->capturing++;
        }
    }
}

static void capture_end(axs_doc *d) {
    for (int i = 0; i < d->capture_count; i++) {
        capture *c = &d->captures[i];
        if (c->state == CAPTURE_READING && c->depth == d->depth) {
            c->state = CAPTURE_DONE;
            d->capturing--;
            d->captures_open--;
        }
        if (c->matched > d->depth - 2 && d->depth >= 2) c->matched = d->depth - 2;
    }
}

static void capture_text(axs_doc *d, const xmlChar *text, int length) {
    for (int i = 0; i < d->capture_count; i++) {
        capture *c = &d->captures[i];
        if (c->state != CAPTURE_READING) continue;
        if (c->length + (size_t)length > CAPTURE_BYTES) { c->overflow = 1; continue; }
        memcpy(c->value + c->length, text, (size_t)length);
        c->length += (size_t)length;
        c->value[c->length] = '\0';
    }
}

axs_capture_set *axs_capture_set_new(const char *const *paths, int count) {
    if (count < 0 || count > MAX_CAPTURES) return NULL;
    axs_capture_set *set = calloc(1, sizeof *set);
    if (set == NULL) return NULL;
    set->count = count;
    for (int i = 0; i < count; i++) {
        const char *p = paths[i];
        while (*p != '\0') {
            const char *slash = strchr(p, '/');
            size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
            if (n > 0) {
                if (set->step_count[i] == MAX_CAPTURE_STEPS) { axs_capture_set_free(set); return NULL; }
                char *step = strndup(p, n);
                if (step == NULL) { axs_capture_set_free(set); return NULL; }
                set->steps[i][set->step_count[i]++] = step;
            }
            p += n;
            if (*p == '/') p++;
        }
        if (set->step_count[i] == 0) { axs_capture_set_free(set); return NULL; }
    }
    return set;
}

void axs_capture_set_free(axs_capture_set *set) {
    if (set == NULL) return;
    for (int i = 0; i < MAX_CAPTURES; i++)
        for (int j = 0; j < set->step_count[i]; j++) free(set->steps[i][j]);
    free(set);
}

void axs_doc_use_captures(axs_doc *d, const axs_capture_set *set) {
    d->capture_set = set;
    d->capture_count = set != NULL ? set->count : 0;
    d->captures_open = d->capture_count;
    d->capturing = 0;
    for (int i = 0; i < d->capture_count; i++) memset(&d->captures[i], 0, sizeof d->captures[i]);
}

const char *axs_doc_capture(const axs_doc *d, int index) {
    if (index < 0 || index >= d->capture_count) return NULL;
    const capture *c = &d->captures[index];
    if (c->state == CAPTURE_SEARCHING || c->overflow) return NULL;
    return c->value;
}

/* ---- SAX callbacks (user side of the plug) -------------------------------------------------------------------- */

static void on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id) {
    (void)name; (void)external_id; (void)system_id;
    refuse_here(ctx, "input.doctype-forbidden",
                "a DOCTYPE declaration is not allowed in a submission (entities, external DTDs and DTD defaults could "
                "change or leak content); remove it");
}

static void select_and_plug(axs_doc *d, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                            int nb_attributes, const xmlChar **attributes) {
    const char *names[64];
    char *values[64];
    int count = 0;
    for (int i = 0; i < nb_attributes && count < 64; i++) {
        const xmlChar *attr_uri = attributes[i * 5 + 2];
        if (attr_uri != NULL) continue;
        const xmlChar *begin = attributes[i * 5 + 3], *end = attributes[i * 5 + 4];
        size_t len = (size_t)(end - begin);
        char *value = malloc(len + 1);
        if (value == NULL) break;
        memcpy(value, begin, len);
        value[len] = '\0';
        names[count] = (const char *)attributes[i * 5];
        values[count] = value;
        count++;
    }
    axs_root root;
    root.namespace_uri = uri != NULL ? (const char *)uri : "";
    root.local_name = (const char *)localname;
    root.prefix = (const char *)prefix;
    root.attribute_names = names;
    root.attribute_values = (const char *const *)values;
    root.attribute_count = count;
    current_position(d, &root.line, &root.column);
    const axs_schema *schema = d->select != NULL ? d->select(d->context, &root) : NULL;
    for (int i = 0; i < count; i++) free(values[i]);
    if (schema == NULL) return;
    d->schema = schema;

    d->validator = xmlSchemaNewValidCtxt(schema->xsd);
    if (d->validator == NULL) {
        emit_here(d, AXS_SEVERITY_ERROR, "schema.internal", "could not create a validation context");
        return;
    }
    xmlSchemaSetValidStructuredErrors(d->validator, on_validity_error, d);
    d->plug = xmlSchemaSAXPlug(d->validator, &d->parser->sax, &d->parser->userData);
    if (d->plug == NULL) {
        emit_here(d, AXS_SEVERITY_ERROR, "schema.internal", "could not attach the schema validator");
        return;
    }
    d->parser->sax->serror = axs_on_parser_error;   /* the plug does not forward serror (2.9.14) */
    d->schema_applied = 1;
}

static void on_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                             int nb_namespaces, const xmlChar **namespaces, int nb_attributes, int nb_defaulted,
                             const xmlChar **attributes) {
    axs_doc *d = ctx;
    if (d->replaying_root) return;
    apply_pending_pop(d);
    d->text_bytes = 0;
    /* Pushed even when refused: the validator sees this start tag too, and at the end both stacks must agree. */
    if (push_level(d, localname, prefix, uri) != 0) {
        emit_here(d, AXS_SEVERITY_FATAL, "input.out-of-memory", "out of memory");
        stop(d);
        return;
    }
    if ((++d->elements & 255) == 0 && check_time(d)) return;
    if (d->limits.max_depth > 0 && d->depth > d->limits.max_depth) {
        char message[160];
        snprintf(message, sizeof message, "elements are nested deeper than the limit of %d levels",
                 d->limits.max_depth);
        refuse_here(d, "input.too-deep", message);
        return;
    }
    if (d->captures_open > 0 && d->depth >= 2) capture_start(d, localname);
    if (d->collect_codes && d->depth >= 2) codes_start(d, localname, nb_attributes, attributes);
    if (!d->root_seen) {
        d->root_seen = 1;
        select_and_plug(d, localname, prefix, uri, nb_attributes, attributes);
        if (d->plug != NULL) {
            /* Replay the root through the plugged handler so the validator sees it; our own part is done. */
            d->replaying_root = 1;
            d->parser->sax->startElementNs(d->parser->userData, localname, prefix, uri, nb_namespaces, namespaces,
                                           nb_attributes, nb_defaulted, attributes);
            d->replaying_root = 0;
        }
    }
}

static void on_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri) {
    (void)localname; (void)prefix; (void)uri;
    axs_doc *d = ctx;
    apply_pending_pop(d);
    d->text_bytes = 0;
    if (d->captures_open > 0) capture_end(d);
    if (d->reading_code && d->depth == d->reading_depth) codes_end(d);
    d->pending_pop = 1;   /* the validator's end-of-element findings still name this element */
}

static void on_characters(void *ctx, const xmlChar *ch, int len) {
    axs_doc *d = ctx;
    apply_pending_pop(d);
    d->text_bytes += len;
    if (d->capturing > 0) capture_text(d, ch, len);
    if (d->reading_code) codes_text(d, ch, len);
    if (d->limits.max_text_bytes > 0 && d->text_bytes > d->limits.max_text_bytes) {
        char message[160];
        snprintf(message, sizeof message, "a text node is longer than the limit of %lld bytes",
                 (long long)d->limits.max_text_bytes);
        refuse_here(d, "input.text-too-long", message);
    }
}

void axs_on_parser_error(void *data, axs_error error) {
    (void)data;   /* after plugging, data is the plug, not ours: the document hangs off the parser context */
    if (error == NULL || error->ctxt == NULL) return;
    xmlParserCtxtPtr parser = error->ctxt;
    axs_doc *d = parser->_private;
    if (d == NULL || d->stopped) return;
    if (error->code == XML_ERR_USER_STOP) return;
    int severity = error->level == XML_ERR_WARNING ? AXS_SEVERITY_WARNING
                 : error->level == XML_ERR_FATAL ? AXS_SEVERITY_FATAL : AXS_SEVERITY_ERROR;
    if (severity != AXS_SEVERITY_WARNING) d->well_formed = 0;
    const char *code = axs_code_for_parser_error(error->domain, error->code);
    const char *message = error->message;
    /* The end of input inside the document: 2.9 says XML_ERR_DOCUMENT_END; 2.13+ names what is open (a tag, a
     * CDATA section, a comment, a PI). Only while finishing: the same codes mid-document are other errors. */
    int open_at_end = error->code == XML_ERR_TAG_NOT_FINISHED || error->code == XML_ERR_CDATA_NOT_FINISHED ||
                      error->code == XML_ERR_COMMENT_NOT_FINISHED || error->code == XML_ERR_PI_NOT_FINISHED;
    int ended = error->domain == XML_FROM_PARSER &&
                (error->code == XML_ERR_DOCUMENT_END || error->code == XML_ERR_DOCUMENT_EMPTY ||
                 (d->finishing && open_at_end));
    if (message != NULL && strstr(message, "too big found") != NULL) ended = 0;   /* a limit, see below */
    if (ended) {
        if (!d->root_seen) {
            code = "xml.empty";
            message = "no root element: the document is empty, holds only whitespace, comments or processing "
                      "instructions, or does not start with markup (is it UTF-8 XML?)";
        } else if (d->finishing && d->depth > 0) {
            code = "xml.truncated";
            message = "the document ends before its elements are closed (truncated upload?)";
        }
    }
    /* libxml2's own limits, known by their messages: the codes moved between releases (XML_ERR_INTERNAL_ERROR in
     * 2.9 and 2.12, XML_ERR_RESOURCE_LIMIT or the construct's *_NOT_FINISHED in 2.13+). */
    if (message != NULL && error->domain == XML_FROM_PARSER &&
        (strstr(message, "Huge input lookup") != NULL || strstr(message, "Buffer size limit exceeded") != NULL ||
         strstr(message, "too big found") != NULL || strstr(message, "AttValue length too long") != NULL)) {
        code = "input.text-too-long";
        message = "an attribute value, comment or text is longer than libxml2's limit of 10,000,000 bytes";
    } else if (message != NULL && error->domain == XML_FROM_PARSER &&
               strstr(message, "Excessive depth in document") != NULL) {
        code = "input.too-deep";
    } else if (message != NULL && error->domain == XML_FROM_PARSER &&
               strstr(message, "Maximum number of attributes exceeded") != NULL) {
        code = "input.too-many-attributes";
    }
    emit(d, severity, code, error->line, error->int2, message);
}

static void on_validity_error(void *data, axs_error error) {
    axs_doc *d = data;
    if (error == NULL || d == NULL) return;
    int severity = error->level == XML_ERR_WARNING ? AXS_SEVERITY_WARNING : AXS_SEVERITY_ERROR;
    const char *code = axs_code_for_validity_error(error->code, error->message);
    /* libxml2 follows an invalid key field with "No precomputed value available": the value's own finding,
     * already reported at this element, says it all. */
    if (error->message != NULL && strstr(error->message, "No precomputed value available") != NULL &&
        d->last_code != NULL) {
        char path[1024];
        build_path(d, path, sizeof path);
        if (strncmp(d->last_path, path, sizeof d->last_path - 1) == 0) {
            d->errors++;
            return;
        }
    }
    emit_here(d, severity, code, error->message);
}

static xmlSAXHandler sax_template(void) {
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC;
    sax.internalSubset = on_internal_subset;
    sax.startElementNs = on_start_element;
    sax.endElementNs = on_end_element;
    sax.characters = on_characters;
    sax.cdataBlock = on_characters;
    sax.ignorableWhitespace = on_characters;
    sax.serror = axs_on_parser_error;
    return sax;
}

/* ---- public API ----------------------------------------------------------------------------------------------- */

axs_doc *axs_doc_new(const char *display_name, const axs_limits *limits,
                     axs_select_fn select, axs_diagnostic_fn on_diagnostic, void *context) {
    axs_global_init();
    axs_doc *d = calloc(1, sizeof *d);
    if (d == NULL) return NULL;
    d->limits = *limits;
    d->select = select;
    d->on_diagnostic = on_diagnostic;
    d->context = context;
    d->name = strdup(display_name != NULL ? display_name : "-");
    d->well_formed = 1;
    axs_prescan_init(&d->scan, limits->max_attributes);

    xmlSAXHandler sax = sax_template();
    d->parser = xmlCreatePushParserCtxt(&sax, d, NULL, 0, d->name);
    if (d->parser == NULL || d->name == NULL) { axs_doc_free(d); return NULL; }
    d->parser->_private = d;

    /* Every option set explicitly: the context may have inherited process-wide defaults (for example
     * xmlSubstituteEntitiesDefault(1) called by another library), which xmlCtxtUseOptions never clears.
     * xmlCtxtSetOptions (2.13+) clears every option not given, including those struct members. */
#if LIBXML_VERSION >= 21300
    xmlCtxtSetOptions(d->parser, XML_PARSE_NONET | XML_PARSE_IGNORE_ENC | XML_PARSE_BIG_LINES);
#else
    d->parser->options = 0;
    d->parser->replaceEntities = 0;
    d->parser->loadsubset = 0;
    d->parser->validate = 0;
    d->parser->pedantic = 0;
    d->parser->recovery = 0;
    d->parser->keepBlanks = 1;
    d->parser->linenumbers = 1;
    xmlCtxtUseOptions(d->parser, XML_PARSE_NONET | XML_PARSE_IGNORE_ENC | XML_PARSE_BIG_LINES);
    d->parser->replaceEntities = 0;
    d->parser->loadsubset = 0;
#endif

    /* UTF-8 only: IGNORE_ENC keeps declarations from switching the decoder, and flush_head refuses the byte
     * patterns libxml2 would auto-detect as another encoding (UTF-16/32, EBCDIC) and declarations of other
     * encodings. Not forcing a UTF-8 "conversion" saves a copy of every byte (3 % of instructions). */
    return d;
}

/* Feeds body bytes to the parser. Every byte libxml2 is handed has been through the attribute pre-scan first,
 * including the part of a chunk that reaches up to the size limit: one large buffer cannot slip a start tag with
 * 10^5 attributes past the scan (libxml2 2.9.14 checks them in quadratic time). */
static int feed_body(axs_doc *d, const char *bytes, size_t length) {
    if (d->stopped) return 1;
    int too_large = 0;
    if (d->limits.max_bytes > 0 && d->bytes + (int64_t)length > d->limits.max_bytes) {
        length = (size_t)(d->limits.max_bytes - d->bytes);   /* only what fits is scanned and fed */
        too_large = 1;
    }
    size_t safe = axs_prescan_run(&d->scan, (const unsigned char *)bytes, length);
    size_t unsafe = length - safe;
    while (safe > 0 && !d->stopped) {
        int piece = safe > (1 << 30) ? (1 << 30) : (int)safe;
        xmlParseChunk(d->parser, bytes, piece, 0);
        bytes += piece;
        safe -= (size_t)piece;
        d->bytes += piece;
    }
    if (!d->stopped && unsafe > 0) {
        char message[160];
        snprintf(message, sizeof message, "a start tag has more than %d attributes and namespace declarations",
                 d->limits.max_attributes);
        /* The parser has consumed everything before the tag: its position is the tag's. */
        refuse_here(d, "input.too-many-attributes", message);
    }
    if (!d->stopped && too_large) {
        char message[160];
        snprintf(message, sizeof message, "the document is larger than the limit of %lld bytes",
                 (long long)d->limits.max_bytes);
        refuse_here(d, "input.too-large", message);
    }
    if (!d->well_formed) stop(d);   /* decided: libxml2 would only scan on without callbacks */
    return d->stopped || too_large;
}

static int refuse_start(axs_doc *d, const char *code, const char *message) {
    emit(d, AXS_SEVERITY_FATAL, code, 1, 1, message);
    d->well_formed = 0;
    stop(d);
    return 1;
}

static int starts_with(const unsigned char *bytes, size_t length, const char *prefix, size_t prefix_length) {
    return length >= prefix_length && memcmp(bytes, prefix, prefix_length) == 0;
}

/* Checks the first bytes before libxml2 sees them: one UTF-8 BOM is dropped; UTF-16/32, gzip and XML
 * declarations naming an encoding other than UTF-8 are refused with a clear reason (submissions are UTF-8). */
static int flush_head(axs_doc *d) {
    d->head_done = 1;
    const unsigned char *h = d->head;
    size_t n = d->head_length;
    size_t skip = 0;
    if (starts_with(h, n, "\xEF\xBB\xBF", 3)) {
        skip = 3;
        /* libxml2 would silently drop a second one. */
        if (starts_with(h + 3, n - 3, "\xEF\xBB\xBF", 3))
            return refuse_start(d, "xml.encoding", "the document starts with two byte order marks");
    } else if (starts_with(h, n, "\x1F\x8B", 2))
        return refuse_start(d, "input.compressed",
                            "the input is gzip-compressed; submissions must be plain UTF-8 XML (never unpacked here)");

    /* The signatures of other encodings, also after a UTF-8 byte order mark: libxml2 detects them from the first
     * bytes it is given (the mark is not fed) and would switch its decoder, EBCDIC included. */
    const unsigned char *decl = h + skip;
    size_t decl_length = n - skip;
    if (starts_with(decl, decl_length, "\xFF\xFE", 2) || starts_with(decl, decl_length, "\xFE\xFF", 2) ||
        starts_with(decl, decl_length, "\x00\x3C", 2) || starts_with(decl, decl_length, "\x3C\x00", 2) ||
        starts_with(decl, decl_length, "\x00\x00", 2))
        return refuse_start(d, "xml.encoding", "the document is UTF-16 or UTF-32 encoded; submissions must be UTF-8");
    if (starts_with(decl, decl_length, "\x4C\x6F\xA7\x94", 4))
        return refuse_start(d, "xml.encoding", "the document is EBCDIC encoded; submissions must be UTF-8");

    if (starts_with(decl, decl_length, "<?xml", 5) && decl_length > 5 &&
        (decl[5] == ' ' || decl[5] == '\t' || decl[5] == '\r' || decl[5] == '\n')) {
        const unsigned char *end = NULL;
        for (size_t i = 5; i + 1 < decl_length; i++)
            if (decl[i] == '?' && decl[i + 1] == '>') { end = decl + i; break; }
        if (end != NULL) {
            const char *needle = "encoding";
            for (const unsigned char *p = decl + 5; p + 8 < end; p++) {
                if (memcmp(p, needle, 8) != 0) continue;
                const unsigned char *q = p + 8;
                while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
                if (q >= end || *q != '=') break;
                q++;
                while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
                if (q >= end || (*q != '"' && *q != '\'')) break;
                unsigned char quote = *q++;
                const unsigned char *value = q;
                while (q < end && *q != quote) q++;
                size_t value_length = (size_t)(q - value);
                int utf8 = (value_length == 5 && strncasecmp((const char *)value, "UTF-8", 5) == 0) ||
                           (value_length == 4 && strncasecmp((const char *)value, "UTF8", 4) == 0);
                if (!utf8) {
                    char message[200];
                    snprintf(message, sizeof message,
                             "the XML declaration names encoding '%.*s'; submissions must be UTF-8 (declared and "
                             "encoded)", (int)(value_length > 40 ? 40 : value_length), (const char *)value);
                    return refuse_start(d, "xml.encoding", message);
                }
                break;
            }
        }
    }
    d->bytes += (int64_t)skip;
    return feed_body(d, (const char *)h + skip, n - skip);
}

static int feed_document(axs_doc *d, const char *bytes, size_t length) {
    if (d->stopped) return 1;
    if (d->started_ms == 0) d->started_ms = now_ms();
    else if (check_time(d)) return 1;
    if (!d->head_done) {
        size_t take = HEAD_SIZE - d->head_length;
        if (take > length) take = length;
        memcpy(d->head + d->head_length, bytes, take);
        d->head_length += take;
        bytes += take;
        length -= take;
        if (d->head_length < HEAD_SIZE) return 0;
        if (flush_head(d)) return 1;
    }
    return length > 0 ? feed_body(d, bytes, length) : d->stopped;
}

/* A message libxml2 sent past the parser context (loader.c takes over the thread's error functions during an own
 * parse). The known case is a decoding error while the push parser converts a chunk (2.9 and 2.12): the parser
 * halts without an error of its own, so this is the only word of what happened. It becomes one finding at the
 * parser's position, with a message of ours: libxml2's text quotes the undecodable bytes. */
static void on_stray_message(void *data, axs_error error, const char *generic_format) {
    axs_doc *d = data;
    if (d == NULL || d->stopped) return;   /* every way to a stop has made its own finding */
    int encoding = error != NULL ? error->domain == XML_FROM_I18N ||
                                   strcmp(axs_code_for_parser_error(error->domain, error->code), "xml.encoding") == 0
                                 : generic_format != NULL && strstr(generic_format, "encod") != NULL;
    if (!encoding) {
        /* Anything else (the validator's "Unimplemented block" notes go this way): said, never silently dropped,
         * and not a verdict of its own. */
        emit_here(d, AXS_SEVERITY_WARNING, "schema.internal",
                  "libxml2 reported a message outside the parser; its text is not shown (it may quote the document)");
        return;
    }
    if (error != NULL && error->level == XML_ERR_WARNING) {
        emit_here(d, AXS_SEVERITY_WARNING, "xml.encoding", "libxml2 warned about the document's encoding here");
        return;
    }
    d->well_formed = 0;
    if (d->encoding_reported) return;
    d->encoding_reported = 1;
    emit_here(d, AXS_SEVERITY_FATAL, "xml.encoding",
              "bytes here cannot be decoded in the document's encoding (declared, or UTF-8 by default); the rest was "
              "not read");
}

/* Feed and finish run as Amtsbote's own parse: the entity loader refuses everything in them, and libxml2's stray
 * messages become findings of this document (loader.c). */
int axs_doc_feed(axs_doc *d, const char *bytes, size_t length) {
    axs_own_parse_enter_reporting(on_stray_message, d);
    int decided = feed_document(d, bytes, length);
    axs_own_parse_leave();
    return decided;
}

static void finish_document(axs_doc *d, axs_result *result) {
    if (!d->head_done && !d->stopped) {
        if (d->head_length == 0) {
            refuse_start(d, "xml.empty", "the document is empty (0 bytes)");
        } else {
            flush_head(d);
        }
    }
    d->finishing = 1;
    if (!d->stopped) {
        xmlParseChunk(d->parser, NULL, 0, 1);
        apply_pending_pop(d);
    }
    int schema_valid = 0;
    apply_pending_pop(d);
    if (d->plug != NULL && d->depth > 0) {
        /* libxml2 2.9.14 leaks 72 bytes per element the validator still has open when a document is cut off
         * (seen with ASan in a plain C program too): close them through the validator, without reporting. */
        d->unwinding = 1;
        d->parser->disableSAX = 0;
        d->pending_pop = 0;
        while (d->depth > 0) {
            const level *l = &d->levels[d->depth - 1];
            d->parser->sax->endElementNs(d->parser->userData, l->local, l->prefix, l->uri);
            apply_pending_pop(d);
        }
    }
    if (d->plug != NULL) {
        xmlSchemaSAXUnplug(d->plug);
        d->plug = NULL;
        schema_valid = xmlSchemaIsValid(d->validator) == 1;
    }
    result->well_formed = d->well_formed && d->root_seen;
    result->schema_applied = d->schema_applied && !d->stopped;
    result->schema_valid = schema_valid;
    result->stopped = d->stopped;
    result->bytes = d->bytes;
    result->errors = d->errors;
}

void axs_doc_finish(axs_doc *d, axs_result *result) {
    axs_own_parse_enter_reporting(on_stray_message, d);
    finish_document(d, result);
    axs_own_parse_leave();
}

void axs_doc_free(axs_doc *d) {
    if (d == NULL) return;
    if (d->plug != NULL) xmlSchemaSAXUnplug(d->plug);
    if (d->parser != NULL) {
        d->parser->_private = NULL;
        xmlFreeParserCtxt(d->parser);
    }
    if (d->validator != NULL) xmlSchemaFreeValidCtxt(d->validator);
    for (int i = 0; i < d->level_capacity; i++) free(d->levels[i].children);
    free(d->levels);
    for (int i = 0; i < d->observation_count; i++) free((void *)d->observations[i].list_uri);
    free(d->observations);
    free(d->name);
    free(d);
}

/* The prefix the document binds to `uri` among the elements open now, innermost first (an element whose end tag
 * is being handled is still open: its pop is deferred): "" for the default namespace, NULL when no open element is
 * in that namespace, or when an inner open element binds the same prefix to another namespace. The pointer is
 * valid until the next callback. */
const char *axs_doc_prefix_for(const axs_doc *d, const char *uri) {
    if (d == NULL || uri == NULL) return NULL;
    int top = d->depth < d->level_capacity ? d->depth - 1 : d->level_capacity - 1;
    for (int i = top; i >= 0; i--) {
        const level *l = &d->levels[i];
        if (l->local == NULL || l->uri == NULL || strcmp((const char *)l->uri, uri) != 0) continue;
        const xmlChar *prefix = l->prefix;
        for (int j = i + 1; j <= top; j++) {   /* the same prefix (or the default) re-bound further in */
            const level *inner = &d->levels[j];
            int same_prefix = (prefix == NULL && inner->prefix == NULL) ||
                              (prefix != NULL && inner->prefix != NULL && xmlStrEqual(prefix, inner->prefix));
            if (same_prefix && inner->uri != NULL && !xmlStrEqual(inner->uri, l->uri)) return NULL;
        }
        return prefix ? (const char *)prefix : "";
    }
    return NULL;
}
