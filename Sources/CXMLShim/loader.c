/* Process set-up and the external entity loader. Inside Amtsbote's own parses on this thread it denies
 * everything, except catalog or schema-set files while a schema compiles; outside them it hands every load to the
 * loader the process had before (libxml2's default or one a host program installed), so a program that embeds
 * Amtsbote and uses libxml2 for its own documents keeps its external entity loading. */
#include "shim_internal.h"
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local axs_resolve_scope *current_scope = NULL;
static _Thread_local int own_parses = 0;    /* Amtsbote parses running on this thread (nested calls count) */
static atomic_uint_fast64_t refused_instance_loads = 0;
static _Thread_local uint64_t refused_on_this_thread = 0;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int init_done = 0;
/* The loader installed before ours: written once, before ours is installed, then only read. */
static xmlExternalEntityLoader previous_loader = NULL;

axs_resolve_scope *axs_loader_enter(axs_resolve_scope *scope) {
    axs_resolve_scope *enclosing = current_scope;
    current_scope = scope;
    return enclosing;
}
void axs_loader_leave(axs_resolve_scope *enclosing) { current_scope = enclosing; }

/* libxml2's thread-wide error channels. Some messages have no parser context to travel through (an encoding
 * error while the push parser converts a chunk, "xmlParseChunk: encoder error"): libxml2 hands them to the
 * thread's generic or structured error function, whose default prints to stderr, quoting document bytes. During
 * an own parse this thread's functions are ours; they never print, count the message and pass it to the sink the
 * outermost own parse named (a document turns it into a finding). The host program's functions are put back when
 * the outermost own parse ends, so its own libxml2 use reports as it always did. */
static _Thread_local xmlGenericErrorFunc saved_generic = NULL;
static _Thread_local void *saved_generic_context = NULL;
static _Thread_local xmlStructuredErrorFunc saved_structured = NULL;
static _Thread_local void *saved_structured_context = NULL;
static _Thread_local axs_stray_report stray_report = NULL;
static _Thread_local void *stray_report_data = NULL;
static atomic_uint_fast64_t stray_messages = 0;
static _Thread_local uint64_t stray_on_this_thread = 0;

uint64_t axs_stray_messages(void) { return atomic_load(&stray_messages); }
uint64_t axs_stray_messages_on_this_thread(void) { return stray_on_this_thread; }

/* The format alone goes on: formatting would copy document bytes that the arguments may quote. */
static void on_stray_generic(void *context, const char *format, ...) {
    (void)context;
    atomic_fetch_add(&stray_messages, 1);
    stray_on_this_thread++;
    if (stray_report != NULL) stray_report(stray_report_data, NULL, format);
}

static void on_stray_structured(void *context, axs_error error) {
    (void)context;
    atomic_fetch_add(&stray_messages, 1);
    stray_on_this_thread++;
    if (stray_report != NULL) stray_report(stray_report_data, error, NULL);
}

/* Reporters of the enclosing own parses: a schema compiled on first use runs inside the parse of the document that
 * selected it, and its stray messages belong to the compile, not to that document. */
enum { MAX_NESTED_PARSES = 8 };
static _Thread_local axs_stray_report enclosing_report[MAX_NESTED_PARSES];
static _Thread_local void *enclosing_report_data[MAX_NESTED_PARSES];

void axs_own_parse_enter_reporting(axs_stray_report report, void *data) {
    if (own_parses > 0) {
        if (own_parses < MAX_NESTED_PARSES) {   /* deeper (never in practice): the enclosing reporter stays */
            enclosing_report[own_parses] = stray_report;
            enclosing_report_data[own_parses] = stray_report_data;
            stray_report = report;
            stray_report_data = data;
        }
        own_parses++;
        return;
    }
    own_parses++;
    saved_generic = xmlGenericError;
    saved_generic_context = xmlGenericErrorContext;
    saved_structured = xmlStructuredError;
    saved_structured_context = xmlStructuredErrorContext;
    xmlSetGenericErrorFunc(NULL, on_stray_generic);
    xmlSetStructuredErrorFunc(NULL, on_stray_structured);
    stray_report = report;
    stray_report_data = data;
}

void axs_own_parse_enter(void) { axs_own_parse_enter_reporting(NULL, NULL); }
void axs_own_parse_begin(void) { axs_global_init(); axs_own_parse_enter(); }
void axs_own_parse_end(void) { axs_own_parse_leave(); }

void axs_own_parse_leave(void) {
    if (--own_parses > 0) {
        if (own_parses < MAX_NESTED_PARSES) {
            stray_report = enclosing_report[own_parses];
            stray_report_data = enclosing_report_data[own_parses];
        }
        return;
    }
    xmlSetGenericErrorFunc(saved_generic_context, saved_generic);
    xmlSetStructuredErrorFunc(saved_structured_context, saved_structured);
    stray_report = NULL;
    stray_report_data = NULL;
}

const char *axs_libxml2_version(void) { return xmlParserVersion; }

uint64_t axs_refused_instance_loads(void) { return atomic_load(&refused_instance_loads); }
uint64_t axs_refused_instance_loads_on_this_thread(void) { return refused_on_this_thread; }

/* "file:///a/b%20c" or "/a/b%20c" -> "/a/b c" (malloc'd); NULL for any other scheme. */
static char *local_path_of(const char *location) {
    const char *p = location;
    if (strncmp(p, "file://localhost/", 17) == 0) p += 16;
    else if (strncmp(p, "file://", 7) == 0) p += 7;
    else if (strncmp(p, "file:", 5) == 0) p += 5;
    else if (strstr(p, "://") != NULL) return NULL;
    if (*p == '\0') return NULL;
    return xmlURIUnescapeString(p, 0, NULL);
}

static int is_under_root(const char *real, const axs_resolve_scope *scope) {
    for (int i = 0; i < scope->root_count; i++) {
        const char *root = scope->roots[i];
        size_t n = strlen(root);
        if (n == 1 && root[0] == '/') return 1;
        if (strncmp(real, root, n) == 0 && (real[n] == '/' || real[n] == '\0')) return 1;
    }
    return 0;
}

/* Resolves through the scope's catalogs first, then as a file inside an allowed root. malloc'd real path. */
static char *resolve(axs_resolve_scope *scope, const char *url, const char *public_id) {
    for (int i = 0; i < scope->catalog_count; i++) {
        xmlCatalogPtr catalog = scope->catalogs[i]->catalog;
        xmlChar *hit = xmlACatalogResolve(catalog, (const xmlChar *)public_id, (const xmlChar *)url);
        if (hit == NULL) hit = xmlACatalogResolveURI(catalog, (const xmlChar *)url);
        if (hit != NULL) {
            char *path = local_path_of((const char *)hit);
            xmlFree(hit);
            if (path == NULL) return NULL;   /* a catalog entry pointing at the network is refused */
            char *real = realpath(path, NULL);
            xmlFree(path);
            return real;                      /* catalog targets are trusted configuration */
        }
    }
    char *path = local_path_of(url);
    if (path == NULL) return NULL;
    char *real = realpath(path, NULL);
    xmlFree(path);
    if (real != NULL && !is_under_root(real, scope)) { free(real); return NULL; }
    return real;
}

static xmlParserInputPtr axs_entity_loader(const char *url, const char *public_id, xmlParserCtxtPtr ctxt) {
    axs_resolve_scope *scope = current_scope;
    if (scope == NULL && own_parses == 0) {
        /* Not ours: the host program's own libxml2 use gets the loader it had. */
        return previous_loader != NULL ? previous_loader(url, public_id, ctxt) : NULL;
    }
    if (scope == NULL || url == NULL) {
        atomic_fetch_add(&refused_instance_loads, 1);
        refused_on_this_thread++;
        return NULL;
    }
    for (int i = 0; i < scope->memory_count; i++) {
        if (strcmp(url, scope->memory_urls[i]) != 0) continue;
        xmlParserInputPtr input = xmlNewStringInputStream(ctxt, (const xmlChar *)scope->memory_documents[i]);
        if (input != NULL && input->filename == NULL) input->filename = (char *)xmlStrdup((const xmlChar *)url);
        return input;
    }
    char *real = resolve(scope, url, public_id);
    if (real == NULL) {
        scope->refused++;
        strncpy(scope->last_refused, url, sizeof scope->last_refused - 1);
        scope->last_refused[sizeof scope->last_refused - 1] = '\0';
        return NULL;
    }
    xmlParserInputPtr input = xmlNewInputFromFile(ctxt, real);
    int seen = 0;
    for (int i = 0; i < scope->loaded_count && !seen; i++) seen = strcmp(scope->loaded[i], real) == 0;
    if (!seen && scope->loaded_count < AXS_MAX_LOADED_DOCUMENTS) scope->loaded[scope->loaded_count++] = real;
    else free(real);
    return input;
}

static void global_init_once(void) {
    xmlInitParser();
    previous_loader = xmlGetExternalEntityLoader();
    if (previous_loader == axs_entity_loader) previous_loader = NULL;
    xmlSetExternalEntityLoader(axs_entity_loader);
    /* Nothing may consult the process-wide catalogs (XML_CATALOG_FILES) behind our back. */
    xmlCatalogSetDefaults(XML_CATA_ALLOW_NONE);
    atomic_store(&init_done, 1);
}

void axs_global_init(void) { pthread_once(&init_once, global_init_once); }
int axs_global_init_done(void) { return atomic_load(&init_done); }

axs_catalog *axs_catalog_load(const char *path) {
    axs_global_init();
    axs_own_parse_enter();
    xmlCatalogPtr catalog = xmlLoadACatalog(path);
    axs_own_parse_leave();
    if (catalog == NULL) return NULL;
    axs_catalog *result = calloc(1, sizeof *result);
    if (result == NULL) { xmlFreeCatalog(catalog); return NULL; }
    result->catalog = catalog;
    return result;
}

void axs_catalog_free(axs_catalog *catalog) {
    if (catalog == NULL) return;
    xmlFreeCatalog(catalog->catalog);
    free(catalog);
}

int axs_test_set_substitute_entities_default(int value) {
    axs_global_init();
    /* Deprecated since libxml2 2.12, and still honoured by its parser contexts: what other libraries may call. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return xmlSubstituteEntitiesDefault(value);
#pragma GCC diagnostic pop
}
