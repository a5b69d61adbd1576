/* Test hooks for embedding hygiene: what a host program that embeds Amtsbote and uses libxml2 itself would see. */
#include "shim_internal.h"
#include <stdatomic.h>

static atomic_uint_fast64_t probe_calls = 0;

static xmlParserInputPtr probe_loader(const char *url, const char *public_id, xmlParserCtxtPtr ctxt) {
    (void)url; (void)public_id;
    atomic_fetch_add(&probe_calls, 1);
    return xmlNewStringInputStream(ctxt, (const xmlChar *)"host");
}

int axs_test_install_host_loader(void) {
    if (axs_global_init_done()) return 0;
    xmlInitParser();
    xmlSetExternalEntityLoader(probe_loader);
    return 1;
}

uint64_t axs_test_host_loader_calls(void) { return atomic_load(&probe_calls); }

int axs_test_host_load(const char *url) {
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (ctxt == NULL) return -1;
    xmlParserInputPtr input = xmlLoadExternalEntity(url, NULL, ctxt);
    int loaded = input != NULL;
    if (input != NULL) xmlFreeInputStream(input);
    xmlFreeParserCtxt(ctxt);
    return loaded;
}

typedef struct {
    const char *url;
    int result;
} load_probe;

static const axs_schema *load_on_root(void *context, const axs_root *root) {
    (void)root;
    load_probe *probe = context;
    probe->result = axs_test_host_load(probe->url);
    return NULL;
}

int axs_test_host_load_during_parse(const char *url) {
    load_probe probe = { url, -1 };
    axs_limits limits = { .max_depth = 256, .max_attributes = 256, .max_diagnostics = 10 };
    axs_doc *doc = axs_doc_new("host-load", &limits, load_on_root, NULL, &probe);
    if (doc == NULL) return -1;
    static const char bytes[] = "<root/>";
    axs_doc_feed(doc, bytes, sizeof bytes - 1);
    axs_result result;
    axs_doc_finish(doc, &result);
    axs_doc_free(doc);
    return probe.result;
}

static _Thread_local int host_messages = 0;
static void host_generic(void *context, const char *format, ...) { (void)context; (void)format; host_messages++; }
static void host_structured(void *context, axs_error error) { (void)context; (void)error; host_messages++; }

int axs_test_stray_messages_stay_inside(const char *bytes, size_t length, uint64_t *stray, int *host_calls) {
    axs_global_init();
    xmlGenericErrorFunc generic_before = xmlGenericError;
    void *generic_context_before = xmlGenericErrorContext;
    xmlStructuredErrorFunc structured_before = xmlStructuredError;
    void *structured_context_before = xmlStructuredErrorContext;
    /* A host program's own error functions on this thread. */
    xmlSetGenericErrorFunc(&host_messages, host_generic);
    xmlSetStructuredErrorFunc(&host_messages, host_structured);
    host_messages = 0;
    uint64_t before = axs_stray_messages_on_this_thread();
    /* What libxml2 does where no parser context is at hand: a message to the thread's generic channel. */
    axs_own_parse_enter();
    xmlGenericError(xmlGenericErrorContext, "stray probe\n");
    axs_own_parse_leave();
    axs_limits limits = { .max_depth = 256, .max_attributes = 256, .max_diagnostics = 10 };
    axs_doc *doc = axs_doc_new("stray", &limits, NULL, NULL, NULL);
    int kept = 0;
    if (doc != NULL) {
        axs_doc_feed(doc, bytes, length);
        axs_result result;
        axs_doc_finish(doc, &result);
        axs_doc_free(doc);
        kept = xmlGenericError == host_generic && xmlGenericErrorContext == &host_messages &&
               xmlStructuredError == host_structured && xmlStructuredErrorContext == &host_messages;
    }
    *stray = axs_stray_messages_on_this_thread() - before;
    *host_calls = host_messages;
    xmlSetGenericErrorFunc(generic_context_before, generic_before);
    xmlSetStructuredErrorFunc(structured_context_before, structured_before);
    return kept;
}
