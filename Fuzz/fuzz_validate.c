/* libFuzzer target over the validation entry point of the C shim (everything Swift hands a document to):
 * start tag selection, limits, pre-scan, DOCTYPE refusal, path tracking, captures, code observations, libxml2's
 * push parser and the schema validator. Inputs are fed in chunks whose sizes come from the input itself, so chunk
 * boundaries are fuzzed too.
 *
 * libxml2 must print nothing: the thread's error functions abort outside Amtsbote's own parses (inside them the
 * shim takes them over), and a message the shim took over must have left a finding.
 *
 *   scripts/fuzz SECONDS      builds with clang -fsanitize=fuzzer,address,undefined and runs with the seed corpus
 */
#include "CXMLShim.h"
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static axs_schema *schema;
static axs_capture_set *captures;
static axs_catalog *catalog;   /* kept for the process's life, as the schema that resolved through it */

static const axs_schema *select_schema(void *context, const axs_root *root) {
    (void)context;
    /* Exercise the root data the selector sees. */
    size_t total = strlen(root->namespace_uri) + strlen(root->local_name);
    for (int i = 0; i < root->attribute_count; i++) total += strlen(root->attribute_values[i]);
    return total % 7 == 6 ? NULL : schema;
}

/* libxml2 printing past the shim (the default functions write to stderr, quoting document bytes) is a finding. */
static void printed_generic(void *context, const char *format, ...) {
    (void)context;
    fprintf(stderr, "libxml2 wrote to its generic error channel outside an own parse: %s\n", format);
    abort();
}

#if LIBXML_VERSION >= 21200
static void printed_structured(void *context, const xmlError *error) {
#else
static void printed_structured(void *context, xmlError *error) {
#endif
    (void)context;
    fprintf(stderr, "libxml2 wrote to its structured error channel outside an own parse: domain %d code %d\n",
            error != NULL ? error->domain : -1, error != NULL ? error->code : -1);
    abort();
}

typedef struct { size_t seen; int findings; } tally;

static void on_diagnostic(void *context, const axs_diagnostic *d) {
    tally *t = context;
    /* Touch every string the callback hands out. */
    t->seen += strlen(d->code) + strlen(d->message) + (d->path ? strlen(d->path) : 0);
    t->findings++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *xsd = getenv("AMTSBOTE_FUZZ_XSD");
    const char *root = getenv("AMTSBOTE_FUZZ_ROOT");
    if (xsd == NULL || root == NULL) { fprintf(stderr, "set AMTSBOTE_FUZZ_XSD and AMTSBOTE_FUZZ_ROOT\n"); exit(2); }
    const char *roots[] = { root };
    const char *catalog_path = getenv("AMTSBOTE_FUZZ_CATALOG");
    catalog = catalog_path != NULL && *catalog_path ? axs_catalog_load(catalog_path) : NULL;
    if (catalog_path != NULL && *catalog_path && catalog == NULL) { fprintf(stderr, "the catalog does not load\n"); exit(2); }
    axs_catalog *const catalogs[] = { catalog };
    schema = axs_schema_compile(xsd, catalog != NULL ? catalogs : NULL, catalog != NULL ? 1 : 0, roots, 1, NULL, NULL);
    if (schema == NULL) { fprintf(stderr, "the fuzz schema does not compile\n"); exit(2); }
    axs_schema_prepare_codes(schema);
    const char *paths[] = { "gemeindeschluessel", "kennung", "a/b/c" };
    captures = axs_capture_set_new(paths, 3);
    xmlSetGenericErrorFunc(NULL, printed_generic);
    xmlSetStructuredErrorFunc(NULL, printed_structured);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    axs_limits limits = { .max_bytes = 1 << 20, .max_depth = 64, .max_attributes = 32, .max_text_bytes = 1 << 16,
                          .max_diagnostics = 20, .max_milliseconds = 0 };
    tally counts = { 0, 0 };
    uint64_t stray_before = axs_stray_messages_on_this_thread();
    axs_doc *doc = axs_doc_new("fuzz", &limits, select_schema, on_diagnostic, &counts);
    if (doc == NULL) return 0;
    axs_doc_use_captures(doc, captures);
    axs_doc_collect_codes(doc, 1);
    size_t offset = 0;
    unsigned step = size > 0 ? (unsigned)data[0] % 61 + 1 : 1;
    while (offset < size) {
        size_t n = size - offset < step ? size - offset : step;
        if (axs_doc_feed(doc, (const char *)data + offset, n)) break;
        offset += n;
        step = step * 7 % 4093 + 1;
    }
    axs_result result;
    axs_doc_finish(doc, &result);
    if (axs_stray_messages_on_this_thread() != stray_before && counts.findings == 0) {
        fprintf(stderr, "libxml2 sent a message past the parser context and the document has no finding for it\n");
        abort();
    }
    size_t seen = counts.seen;
    for (int i = 0; i < 3; i++) {
        const char *value = axs_doc_capture(doc, i);
        if (value != NULL) seen += strlen(value);
    }
    /* The code observations for the code-list check: every string they hand out. */
    for (int i = 0; i < axs_doc_code_count(doc); i++) {
        axs_code_observation o;
        if (!axs_doc_code_at(doc, i, &o)) continue;
        seen += strlen(o.list_uri) + strlen(o.value) + strlen(o.path) + (o.list_version ? strlen(o.list_version) : 0);
    }
    axs_doc_free(doc);
    return 0;
}
