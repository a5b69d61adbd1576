/* Schema compilation with load-time diagnostics (schema file and line). */
#include "shim_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

/* One import libxml2 skipped because its namespace was already imported from another document. */
typedef struct {
    char namespace_name[512];
    char kept[1024];       /* the document libxml2 read for the namespace */
    char skipped[1024];    /* the document it skipped */
    char file[1024];       /* where the skipped import is */
    int line;
} skipped_import;

#define MAX_SKIPPED_IMPORTS 64

/* A load-time finding held back until it is known which compile result is kept. */
typedef struct {
    int severity;
    const char *code;   /* static storage */
    long line;
    char *file;
    char *message;
} pending_diagnostic;

typedef struct {
    axs_diagnostic_fn on_diagnostic;
    void *context;
    axs_resolve_scope *scope;
    int errors;
    pending_diagnostic *pending;
    int pending_count, pending_capacity;
    int collect_skips;     /* hold back skipped-import warnings (the merge below may make them moot) */
    skipped_import skips[MAX_SKIPPED_IMPORTS];
    int skip_count;
    char first_error[512];
} compile_state;

/* Copies the text between the next pair of single quotes after `marker` into `out`; returns the rest or NULL. */
static const char *quoted_after(const char *text, const char *marker, char *out, size_t size) {
    const char *start = strstr(text, marker);
    if (start == NULL) return NULL;
    start += strlen(marker);
    const char *end = strchr(start, '\'');
    if (end == NULL || (size_t)(end - start) >= size) return NULL;
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return end + 1;
}

/* "Skipping import of schema located at 'A' for the namespace 'N', since this namespace was already imported
 * with the schema located at 'B'." */
static int parse_skipped_import(const char *message, skipped_import *out) {
    const char *rest = quoted_after(message, "located at '", out->skipped, sizeof out->skipped);
    if (rest == NULL) return 0;
    rest = quoted_after(rest, "namespace '", out->namespace_name, sizeof out->namespace_name);
    if (rest == NULL) return 0;
    return quoted_after(rest, "located at '", out->kept, sizeof out->kept) != NULL;
}

static void strip_newline(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
}

/* Holds a finding back until the compilation's outcome decides whether it is reported (flush_pending). */
static void hold(compile_state *state, int severity, const char *code, int line, const char *file,
                 const char *message) {
    if (state->pending_count == state->pending_capacity) {
        int capacity = state->pending_capacity ? state->pending_capacity * 2 : 16;
        pending_diagnostic *grown = realloc(state->pending, (size_t)capacity * sizeof *grown);
        if (grown == NULL) return;
        state->pending = grown;
        state->pending_capacity = capacity;
    }
    pending_diagnostic *p = &state->pending[state->pending_count++];
    *p = (pending_diagnostic){ .severity = severity, .code = code, .line = line,
                               .file = file ? strdup(file) : NULL, .message = strdup(message) };
}

static void schema_parser_error(void *data, axs_error error) {
    compile_state *state = data;
    if (error == NULL) return;
    char message[2048];
    snprintf(message, sizeof message, "%s", error->message ? error->message : "unknown error");
    strip_newline(message);
    if (error->code == XML_SCHEMAP_WARN_SKIP_SCHEMA && state->collect_skips && state->skip_count < MAX_SKIPPED_IMPORTS) {
        skipped_import *skip = &state->skips[state->skip_count];
        if (parse_skipped_import(message, skip)) {
            snprintf(skip->file, sizeof skip->file, "%s", error->file ? error->file : "");
            skip->line = error->line;
            state->skip_count++;
            return;
        }
    }
    if (error->level != XML_ERR_WARNING && state->first_error[0] == '\0') {
        snprintf(state->first_error, sizeof state->first_error, "%s", message);
    }
    const char *code = axs_code_for_schema_parser_error(error->code, message);
    int severity = error->level == XML_ERR_WARNING ? AXS_SEVERITY_WARNING : AXS_SEVERITY_ERROR;
    /* A location the loader refused is an error, even where libxml2 only warns and skips the import. */
    const char *refused = state->scope->last_refused;
    if (refused[0] != '\0' && (strcmp(code, "schema.location-unresolvable") == 0 || strstr(message, refused) != NULL)) {
        code = "schema.location-unresolvable";
        severity = AXS_SEVERITY_ERROR;
        snprintf(message, sizeof message,
                 "cannot load the schema location '%s': it is not in the catalog and not a file inside the schema "
                 "set (nothing is fetched from the network)", refused);
    } else if (strcmp(code, "schema.location-unresolvable") == 0) {
        severity = AXS_SEVERITY_ERROR;
    }
    if (severity != AXS_SEVERITY_WARNING) state->errors++;
    hold(state, severity, code, error->line, error->file, message);
}

/* A message libxml2 sent past the schema parser's own error function while compiling (loader.c takes the thread's
 * functions over): typically the XML parser's detail of a schema document that is not well-formed, which libxml2
 * printed on stderr before. Held as a warning with its file and line; the schema parser reports the failure
 * itself, so this never turns a compilation into a failure. The generic channel's text is only counted. */
static void on_compile_stray(void *data, axs_error error, const char *generic_format) {
    (void)generic_format;
    compile_state *state = data;
    if (error == NULL) return;
    char message[2048];
    snprintf(message, sizeof message, "%s", error->message ? error->message : "unknown error");
    strip_newline(message);
    hold(state, AXS_SEVERITY_WARNING, "schema.compile", error->line, error->file, message);
}

/* Reports the held-back findings (or drops them, when `report` is 0) and frees them. */
static void flush_pending(compile_state *state, int report) {
    for (int i = 0; i < state->pending_count; i++) {
        pending_diagnostic *p = &state->pending[i];
        axs_diagnostic d = {
            .severity = p->severity, .code = p->code, .line = p->line, .column = 0,
            .file = p->file, .path = NULL, .message = p->message ? p->message : "",
        };
        if (report && state->on_diagnostic) state->on_diagnostic(state->context, &d);
        free(p->file);
        free(p->message);
    }
    free(state->pending);
    state->pending = NULL;
    state->pending_count = state->pending_capacity = 0;
}

static xmlSchemaPtr parse_with(xmlSchemaParserCtxtPtr parser, compile_state *state) {
    if (parser == NULL) return NULL;
    xmlSchemaSetParserStructuredErrors(parser, schema_parser_error, state);
    axs_resolve_scope *enclosing = axs_loader_enter(state->scope);
    axs_own_parse_enter_reporting(on_compile_stray, state);   /* libxml2's stray messages are not printed */
    xmlSchemaPtr xsd = xmlSchemaParse(parser);
    axs_own_parse_leave();
    axs_loader_leave(enclosing);
    xmlSchemaFreeParserCtxt(parser);
    if (xsd != NULL && state->errors > 0) { xmlSchemaFree(xsd); return NULL; }
    return xsd;
}

/* A growable string for the synthesised documents. */
typedef struct { char *text; size_t length, capacity; int failed; } text_buffer;

static void append(text_buffer *b, const char *s) {
    size_t n = strlen(s);
    if (b->failed) return;
    if (b->length + n + 1 > b->capacity) {
        size_t capacity = (b->length + n + 1) * 2;
        char *grown = realloc(b->text, capacity);
        if (grown == NULL) { b->failed = 1; return; }
        b->text = grown;
        b->capacity = capacity;
    }
    memcpy(b->text + b->length, s, n + 1);
    b->length += n;
}

static void append_escaped(text_buffer *b, const char *s) {
    char one[2] = {0, 0};
    for (; *s; s++) {
        switch (*s) {
        case '&': append(b, "&amp;"); break;
        case '<': append(b, "&lt;"); break;
        case '"': append(b, "&quot;"); break;
        default: one[0] = *s; append(b, one);
        }
    }
}

/* Absolute form of a location libxml2 reported (relative ones are relative to the working folder). */
static void append_location(text_buffer *b, const char *location) {
    if (location[0] == '/' || strstr(location, ":") != NULL) { append_escaped(b, location); return; }
    char *real = realpath(location, NULL);
    append_escaped(b, real ? real : location);
    free(real);
}

static const char *xs_header = "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"";

/*
 * libxml2 2.9 reads only the first xs:import of a namespace and skips later imports of the same namespace from
 * other documents, so components declared only in a skipped document are missing. The fix: compile a synthesised
 * driver that first imports, for each such namespace, one synthesised document including all of that
 * namespace's documents, and then the schema itself (whose own imports of those namespaces are then skipped
 * harmlessly). Returns NULL (with the reason in `state->first_error`) when that does not compile.
 */
static xmlSchemaPtr compile_merged(const char *xsd_path, const xmlChar *target_namespace, compile_state *first,
                                   axs_resolve_scope *scope, compile_state *state) {
    const char *namespaces[MAX_SKIPPED_IMPORTS];
    int namespace_count = 0;
    for (int i = 0; i < first->skip_count; i++) {
        int known = 0;
        for (int j = 0; j < namespace_count; j++) known |= strcmp(namespaces[j], first->skips[i].namespace_name) == 0;
        if (!known) namespaces[namespace_count++] = first->skips[i].namespace_name;
    }
    text_buffer parts[MAX_SKIPPED_IMPORTS] = {{0}};
    /* Served from memory under a name beside the schema (never a real file: the loader answers before looking),
     * so that the absolute locations inside resolve as plain paths, exactly as the schema's own imports do. */
    char urls[MAX_SKIPPED_IMPORTS][PATH_MAX + 64];
    char directory[PATH_MAX];
    snprintf(directory, sizeof directory, "%s", xsd_path);
    char *slash = strrchr(directory, '/');
    if (slash != NULL) *slash = '\0'; else snprintf(directory, sizeof directory, ".");
    const char *url_list[MAX_SKIPPED_IMPORTS], *document_list[MAX_SKIPPED_IMPORTS];
    text_buffer driver = {0};
    append(&driver, xs_header);
    append(&driver, ">\n");
    int main_included = 0;
    for (int n = 0; n < namespace_count; n++) {
        snprintf(urls[n], sizeof urls[n], "%s/.amtsbote-merged-namespace-%d.xsd", directory, n);
        url_list[n] = urls[n];
        append(&parts[n], xs_header);
        append(&parts[n], " targetNamespace=\"");
        append_escaped(&parts[n], namespaces[n]);
        append(&parts[n], "\">\n");
        const char *seen[2 * MAX_SKIPPED_IMPORTS];
        int seen_count = 0;
        for (int i = 0; i < first->skip_count; i++) {
            const skipped_import *skip = &first->skips[i];
            if (strcmp(skip->namespace_name, namespaces[n]) != 0) continue;
            const char *locations[2] = { skip->kept, skip->skipped };
            for (int k = 0; k < 2; k++) {
                int duplicate = 0;
                for (int j = 0; j < seen_count; j++) duplicate |= strcmp(seen[j], locations[k]) == 0;
                if (duplicate) continue;
                seen[seen_count++] = locations[k];
                append(&parts[n], "  <xs:include schemaLocation=\"");
                append_location(&parts[n], locations[k]);
                append(&parts[n], "\"/>\n");
            }
        }
        if (target_namespace != NULL && strcmp((const char *)target_namespace, namespaces[n]) == 0) {
            append(&parts[n], "  <xs:include schemaLocation=\"");
            append_location(&parts[n], xsd_path);
            append(&parts[n], "\"/>\n");
            main_included = 1;
        }
        append(&parts[n], "</xs:schema>\n");
        document_list[n] = parts[n].text;
        append(&driver, "  <xs:import namespace=\"");
        append_escaped(&driver, namespaces[n]);
        append(&driver, "\" schemaLocation=\"");
        append_escaped(&driver, urls[n]);
        append(&driver, "\"/>\n");
    }
    if (!main_included) {
        if (target_namespace != NULL) {
            append(&driver, "  <xs:import namespace=\"");
            append_escaped(&driver, (const char *)target_namespace);
            append(&driver, "\" schemaLocation=\"");
        } else {
            append(&driver, "  <xs:include schemaLocation=\"");
        }
        append_location(&driver, xsd_path);
        append(&driver, "\"/>\n");
    }
    append(&driver, "</xs:schema>\n");

    xmlSchemaPtr xsd = NULL;
    int failed = driver.failed;
    for (int n = 0; n < namespace_count; n++) failed |= parts[n].failed;
    if (!failed) {
        scope->memory_urls = url_list;
        scope->memory_documents = document_list;
        scope->memory_count = namespace_count;
        xsd = parse_with(xmlSchemaNewMemParserCtxt(driver.text, (int)driver.length), state);
        scope->memory_count = 0;
    } else {
        snprintf(state->first_error, sizeof state->first_error, "out of memory");
    }
    free(driver.text);
    for (int n = 0; n < namespace_count; n++) free(parts[n].text);
    return xsd;
}

static void report_skips(compile_state *state, const char *code, int severity, const char *outcome) {
    const char *done[MAX_SKIPPED_IMPORTS];
    int done_count = 0;
    for (int i = 0; i < state->skip_count; i++) {
        const skipped_import *skip = &state->skips[i];
        char message[4096];
        if (strcmp(code, "schema.imports-merged") == 0) {
            int reported = 0;
            for (int j = 0; j < done_count; j++) reported |= strcmp(done[j], skip->namespace_name) == 0;
            if (reported) continue;
            done[done_count++] = skip->namespace_name;
            int count = 1;
            for (int j = 0; j < state->skip_count; j++) count += strcmp(state->skips[j].namespace_name, skip->namespace_name) == 0;
            snprintf(message, sizeof message,
                     "the namespace '%s' is declared in %d documents ('%s' and '%s'%s); libxml2 reads only the first "
                     "import of a namespace, so they were compiled together", skip->namespace_name, count, skip->kept,
                     skip->skipped, count > 2 ? " and others" : "");
        } else {
            snprintf(message, sizeof message,
                     "the import of '%s' for the namespace '%s' was skipped: libxml2 already read '%s' for it, so "
                     "components declared only in the skipped document are missing (%s)",
                     skip->skipped, skip->namespace_name, skip->kept, outcome);
        }
        axs_diagnostic d = {
            .severity = severity, .code = code, .line = skip->line, .column = 0,
            .file = skip->file[0] ? skip->file : NULL, .path = NULL, .message = message,
        };
        if (state->on_diagnostic) state->on_diagnostic(state->context, &d);
    }
}

static void free_loaded(axs_resolve_scope *scope) {
    for (int i = 0; i < scope->loaded_count; i++) free(scope->loaded[i]);
    scope->loaded_count = 0;
}

static axs_schema *compile_schema(const char *xsd_path,
                                  axs_catalog *const *catalogs, int catalog_count,
                                  const char *const *allowed_roots, int root_count,
                                  axs_diagnostic_fn on_diagnostic, void *context) {
    axs_resolve_scope scope = {
        .catalogs = catalogs, .catalog_count = catalog_count,
        .roots = allowed_roots, .root_count = root_count,
    };
    compile_state *state = calloc(1, sizeof *state);
    if (state == NULL) return NULL;
    *state = (compile_state){ .on_diagnostic = on_diagnostic, .context = context, .scope = &scope, .collect_skips = 1 };

    xmlSchemaPtr xsd = parse_with(xmlSchemaNewParserCtxt(xsd_path), state);
    /* Imports skipped by namespace: compile the namespace's documents together. This also rescues a schema that
     * failed only because of what the skipped documents declare. */
    if (state->skip_count > 0) {
        compile_state *merged_state = calloc(1, sizeof *merged_state);
        xmlSchemaPtr merged = NULL;
        if (merged_state != NULL) {
            axs_resolve_scope merged_scope = scope;
            merged_scope.loaded_count = 0;
            /* Later imports of a merged namespace are skipped again, harmlessly: collected, not reported. */
            *merged_state = (compile_state){ .scope = &merged_scope, .collect_skips = 1 };
            char *target = axs_xsd_target_namespace(xsd_path);   /* read from the document, not xmlSchema's fields */
            merged = compile_merged(xsd_path, (const xmlChar *)target, state, &merged_scope, merged_state);
            free(target);
            /* The merged compile read the skipped documents too: their code declarations count. */
            for (int i = 0; i < merged_scope.loaded_count; i++) {
                int seen = 0;
                for (int j = 0; j < scope.loaded_count && !seen; j++) seen = strcmp(scope.loaded[j], merged_scope.loaded[i]) == 0;
                if (!seen && scope.loaded_count < AXS_MAX_LOADED_DOCUMENTS) scope.loaded[scope.loaded_count++] = merged_scope.loaded[i];
                else free(merged_scope.loaded[i]);
            }
        }
        if (merged != NULL) {
            if (xsd != NULL) xmlSchemaFree(xsd);
            xsd = merged;
            flush_pending(state, 0);          /* findings about the half-loaded first result */
            merged_state->on_diagnostic = on_diagnostic;
            merged_state->context = context;
            flush_pending(merged_state, 1);   /* warnings of the result that is kept */
            report_skips(state, "schema.imports-merged", AXS_SEVERITY_WARNING, NULL);
        } else {
            char outcome[700];
            snprintf(outcome, sizeof outcome, "compiling them together failed: %s",
                     merged_state && merged_state->first_error[0] ? merged_state->first_error : "unknown reason");
            if (merged_state) flush_pending(merged_state, 0);
            flush_pending(state, 1);
            report_skips(state, "schema.import-skipped", AXS_SEVERITY_WARNING, outcome);
        }
        free(merged_state);
    } else {
        flush_pending(state, 1);
    }
    if (xsd == NULL) {
        if (state->errors == 0) {
            axs_diagnostic d = {
                .severity = AXS_SEVERITY_ERROR, .code = "schema.compile", .line = 0, .column = 0,
                .file = xsd_path, .path = NULL, .message = "the schema could not be compiled",
            };
            if (on_diagnostic) on_diagnostic(context, &d);
        }
        free(state);
        free_loaded(&scope);
        return NULL;
    }
    free(state);
    axs_schema *schema = calloc(1, sizeof *schema);
    if (schema == NULL) { xmlSchemaFree(xsd); free_loaded(&scope); return NULL; }
    schema->xsd = xsd;
    pthread_mutex_init(&schema->codes_lock, NULL);
    /* The documents the schema was read from, kept for the code-list scan (done only if code lists are used). */
    char *main_real = realpath(xsd_path, NULL);
    int main_loaded = 0;
    for (int i = 0; i < scope.loaded_count; i++)
        if (main_real != NULL && strcmp(main_real, scope.loaded[i]) == 0) main_loaded = 1;
    if (main_real != NULL && !main_loaded && scope.loaded_count < AXS_MAX_LOADED_DOCUMENTS)
        scope.loaded[scope.loaded_count++] = main_real;
    else
        free(main_real);
    schema->documents = malloc((size_t)(scope.loaded_count ? scope.loaded_count : 1) * sizeof *schema->documents);
    if (schema->documents != NULL) {
        memcpy(schema->documents, scope.loaded, (size_t)scope.loaded_count * sizeof *schema->documents);
        schema->document_count = scope.loaded_count;
        scope.loaded_count = 0;
    }
    free_loaded(&scope);
    return schema;
}

/* One compilation at a time in the process: libxml2 2.9.14 builds its table of built-in schema types lazily, in the
 * first compilation, without a lock, so two first compilations on two threads race. Compiling is rare (once per
 * schema set), so serialising all of them costs nothing that matters and needs no "compile on one thread" rule. */
static pthread_mutex_t compile_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int compiles_running = 0;
static atomic_int compiles_running_most = 0;

axs_schema *axs_schema_compile(const char *xsd_path,
                               axs_catalog *const *catalogs, int catalog_count,
                               const char *const *allowed_roots, int root_count,
                               axs_diagnostic_fn on_diagnostic, void *context) {
    axs_global_init();
    pthread_mutex_lock(&compile_lock);
    int running = atomic_fetch_add(&compiles_running, 1) + 1;
    int most = atomic_load(&compiles_running_most);
    while (running > most && !atomic_compare_exchange_weak(&compiles_running_most, &most, running)) {}
    axs_schema *schema = compile_schema(xsd_path, catalogs, catalog_count, allowed_roots, root_count,
                                        on_diagnostic, context);
    atomic_fetch_sub(&compiles_running, 1);
    pthread_mutex_unlock(&compile_lock);
    return schema;
}

int axs_test_max_concurrent_compiles(void) { return atomic_load(&compiles_running_most); }

void axs_schema_free(axs_schema *schema) {
    if (schema == NULL) return;
    xmlSchemaFree(schema->xsd);
    axs_schema_free_codes(schema);
    for (int i = 0; i < schema->document_count; i++) free(schema->documents[i]);
    free(schema->documents);
    pthread_mutex_destroy(&schema->codes_lock);
    free(schema);
}
