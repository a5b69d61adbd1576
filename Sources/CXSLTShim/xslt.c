/* XSLT 1.0 transformations with libxslt, sandboxed: see CXSLTShim.h. */
#include "CXSLTShim.h"
#include <CXMLShim.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/uri.h>
#include <libxml/xmlIO.h>
#include <libxslt/xslt.h>
#include <libxslt/xsltInternals.h>
#include <libxslt/transform.h>
#include <libxslt/security.h>
#include <libxslt/documents.h>
#include <libxslt/xsltutils.h>
#include <libxslt/variables.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct axt_stylesheet {
    xsltStylesheetPtr style;
    char *root;              /* real path of the stylesheet's folder: the only place it may read */
    char *path;
};

/* What the current compile or transformation on this thread allows and reports. */
typedef struct {
    const char *root;
    axt_message_fn report;
    void *context;
    int access_refused;
    int failed;
    /* During a transformation: a message formatted from "%s" alone is an xsl:message text (it may quote the input)
     * and is withheld. While compiling, every message is about the stylesheet itself. */
    int withhold_plain;
} run_scope;

static _Thread_local run_scope *current = NULL;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static xsltSecurityPrefsPtr default_prefs = NULL;
/* libxslt's message handler before ours: a host program's own libxslt use keeps it (written once at init). */
static xmlGenericErrorFunc previous_error = NULL;
static void *previous_error_context = NULL;

static void report(run_scope *scope, const char *file, int line, const char *message) {
    if (scope != NULL && scope->report != NULL) scope->report(scope->context, file, line, message);
}

/* `path` (a local path or file: URI) -> its real path when it lies inside the scope's root (malloc'd); else NULL. */
static char *allowed_path(const run_scope *scope, const char *location) {
    if (scope == NULL || scope->root == NULL || location == NULL) return NULL;
    const char *p = location;
    if (strncmp(p, "file://localhost/", 17) == 0) p += 16;
    else if (strncmp(p, "file://", 7) == 0) p += 7;
    else if (strncmp(p, "file:", 5) == 0) p += 5;
    else if (strstr(p, "://") != NULL) return NULL;
    char *unescaped = xmlURIUnescapeString(p, 0, NULL);
    if (unescaped == NULL) return NULL;
    char *real = realpath(unescaped, NULL);
    xmlFree(unescaped);
    if (real == NULL) return NULL;
    size_t n = strlen(scope->root);
    if (strncmp(real, scope->root, n) == 0 && (real[n] == '/' || real[n] == '\0')) return real;
    free(real);
    return NULL;
}

static void refuse(run_scope *scope, const char *what, const char *location) {
    if (scope == NULL) return;
    scope->access_refused = 1;
    char message[1200];
    snprintf(message, sizeof message, "%s refused: %.1000s", what, location != NULL ? location : "(none)");
    report(scope, NULL, 0, message);
}

/* Security preferences: files only inside the root, no network, no writing, no directories. */
static int check_read_file(xsltSecurityPrefsPtr sec, xsltTransformContextPtr ctxt, const char *value) {
    (void)sec; (void)ctxt;
    char *real = allowed_path(current, value);
    if (real == NULL) { refuse(current, "reading a file outside the stylesheet's folder", value); return 0; }
    free(real);
    return 1;
}

static int forbid_network(xsltSecurityPrefsPtr sec, xsltTransformContextPtr ctxt, const char *value) {
    (void)sec; (void)ctxt;
    refuse(current, "network access", value);
    return 0;
}

static int forbid_write(xsltSecurityPrefsPtr sec, xsltTransformContextPtr ctxt, const char *value) {
    (void)sec; (void)ctxt;
    refuse(current, "writing", value);
    return 0;
}

static xsltSecurityPrefsPtr new_prefs(void) {
    xsltSecurityPrefsPtr prefs = xsltNewSecurityPrefs();
    if (prefs == NULL) return NULL;
    xsltSetSecurityPrefs(prefs, XSLT_SECPREF_READ_FILE, check_read_file);
    xsltSetSecurityPrefs(prefs, XSLT_SECPREF_WRITE_FILE, forbid_write);
    xsltSetSecurityPrefs(prefs, XSLT_SECPREF_CREATE_DIRECTORY, forbid_write);
    xsltSetSecurityPrefs(prefs, XSLT_SECPREF_READ_NETWORK, forbid_network);
    xsltSetSecurityPrefs(prefs, XSLT_SECPREF_WRITE_NETWORK, forbid_network);
    return prefs;
}

/* Parses one document (stylesheet, import, include, document()) from a checked real path: no network, no
 * DTD, no entity substitution; a document with a DOCTYPE is refused. `dict` is shared as libxslt expects. */
static xmlDocPtr parse_file(const char *real, xmlDictPtr dict, run_scope *scope) {
    xmlParserCtxtPtr parser = xmlNewParserCtxt();
    if (parser == NULL) return NULL;
    if (dict != NULL) {
        if (parser->dict != NULL) xmlDictFree(parser->dict);
        parser->dict = dict;
        xmlDictReference(dict);
    }
    xmlCtxtUseOptions(parser, XML_PARSE_NONET | XML_PARSE_NOCDATA);
    xmlParserInputPtr input = xmlNewInputFromFile(parser, real);
    if (input == NULL) {
        report(scope, real, 0, "cannot be read");
        xmlFreeParserCtxt(parser);
        return NULL;
    }
    inputPush(parser, input);
    if (parser->directory == NULL) parser->directory = xmlParserGetDirectory(real);
    xmlParseDocument(parser);
    xmlDocPtr doc = parser->myDoc;
    if (!parser->wellFormed) {
        const xmlError *error = xmlCtxtGetLastError(parser);
        char message[1200];
        snprintf(message, sizeof message, "not well-formed: %.1000s", error != NULL && error->message != NULL ? error->message : "?");
        size_t n = strlen(message);
        if (n > 0 && message[n - 1] == '\n') message[n - 1] = '\0';
        report(scope, real, error != NULL ? error->line : 0, message);
        if (doc != NULL) xmlFreeDoc(doc);
        doc = NULL;
    } else if (doc != NULL && (doc->intSubset != NULL || doc->extSubset != NULL)) {
        report(scope, real, 0, "has a DOCTYPE, which is refused (no DTDs or entities in stylesheets and their documents)");
        if (scope != NULL) scope->failed = 1;
        xmlFreeDoc(doc);
        doc = NULL;
    }
    parser->myDoc = NULL;
    xmlFreeParserCtxt(parser);
    return doc;
}

/* libxslt's document loader (imports, includes, document()): only files inside the root. */
static xmlDocPtr load_document(const xmlChar *uri, xmlDictPtr dict, int options, void *ctxt, xsltLoadType type) {
    (void)options; (void)ctxt; (void)type;
    char *real = allowed_path(current, (const char *)uri);
    if (real == NULL) {
        refuse(current, "loading a document outside the stylesheet's folder", (const char *)uri);
        return NULL;
    }
    xmlDocPtr doc = parse_file(real, dict, current);
    free(real);
    return doc;
}

/* libxslt's messages. Formatted here; an xsl:message text ("%s" with the evaluated content) is withheld. */
static void on_message(void *context, const char *format, ...) {
    (void)context;
    run_scope *scope = current;
    char text[1200];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(text, sizeof text, format, arguments);
    va_end(arguments);
    if (scope == NULL) {
        /* Not ours: the host program's handler, as before. */
        if (previous_error != NULL) previous_error(previous_error_context, "%s", text);
        return;
    }
    if (scope->withhold_plain && strcmp(format, "%s") == 0) { report(scope, NULL, 0, "xsl:message"); return; }
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) text[--n] = '\0';
    if (n == 0) return;
    /* "runtime error: file F line N element E" and "compilation error: file F line N element E" carry the place. */
    char file[PATH_MAX];
    int line = 0;
    const char *at = strstr(text, "file ");
    if (at != NULL && sscanf(at, "file %4095s line %d", file, &line) == 2) {
        report(scope, file, line, text);
    } else {
        report(scope, NULL, 0, text);
    }
}

static void global_init_once(void) {
    axs_global_init();
    xsltInit();
    xsltSetLoaderFunc(load_document);
    previous_error = xsltGenericError;
    previous_error_context = xsltGenericErrorContext;
    if (previous_error == on_message) previous_error = NULL;
    xsltSetGenericErrorFunc(NULL, on_message);
    default_prefs = new_prefs();
    /* Imports and includes consult the default preferences while a stylesheet compiles. */
    if (default_prefs != NULL) xsltSetDefaultSecurityPrefs(default_prefs);
}

static void global_init(void) { pthread_once(&init_once, global_init_once); }

const char *axt_libxslt_version(void) { return xsltEngineVersion; }

axt_stylesheet *axt_stylesheet_compile(const char *path, axt_message_fn report_fn, void *context) {
    global_init();
    char *real = realpath(path, NULL);
    if (real == NULL) {
        if (report_fn != NULL) report_fn(context, path, 0, "cannot be read");
        return NULL;
    }
    char *root = strdup(real);
    char *slash = strrchr(root, '/');
    if (slash != NULL) { if (slash == root) slash[1] = '\0'; else *slash = '\0'; }
    run_scope scope = { .root = root, .report = report_fn, .context = context };
    run_scope *saved = current;
    current = &scope;
    axs_own_parse_begin();
    xsltStylesheetPtr style = NULL;
    xmlDocPtr doc = parse_file(real, NULL, &scope);
    if (doc != NULL) {
        style = xsltParseStylesheetDoc(doc);   /* takes the document, also when it fails */
        if (style == NULL) {
            report(&scope, real, 0, "is no XSLT 1.0 stylesheet libxslt can compile");
        } else if (style->errors > 0 || scope.access_refused) {
            report(&scope, real, 0, scope.access_refused ? "loads a document from outside its folder"
                                                         : "has errors (see the messages above)");
            xsltFreeStylesheet(style);
            style = NULL;
        }
    }
    axs_own_parse_end();
    current = saved;
    if (style == NULL) { free(root); free(real); return NULL; }
    axt_stylesheet *result = calloc(1, sizeof *result);
    if (result == NULL) { xsltFreeStylesheet(style); free(root); free(real); return NULL; }
    result->style = style;
    result->root = root;
    result->path = real;
    return result;
}

void axt_stylesheet_free(axt_stylesheet *stylesheet) {
    if (stylesheet == NULL) return;
    xsltFreeStylesheet(stylesheet->style);
    free(stylesheet->root);
    free(stylesheet->path);
    free(stylesheet);
}

/* A watchdog that stops a transformation at its deadline (libxslt checks the state as it goes). */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done_signal;
    int done;
    int fired;
    long timeout_ms;
    xsltTransformContextPtr ctxt;
} watchdog;

static void *watch(void *argument) {
    watchdog *dog = argument;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += dog->timeout_ms / 1000;
    deadline.tv_nsec += (dog->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) { deadline.tv_sec += 1; deadline.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&dog->lock);
    while (!dog->done) {
        if (pthread_cond_timedwait(&dog->done_signal, &dog->lock, &deadline) != 0 && !dog->done) {
            dog->fired = 1;
            /* Read by the transforming thread between steps; a stale read only delays the stop by a step. */
            __atomic_store_n((int *)&dog->ctxt->state, XSLT_STATE_STOPPED, __ATOMIC_SEQ_CST);
            break;
        }
    }
    pthread_mutex_unlock(&dog->lock);
    return NULL;
}

typedef struct {
    axt_write_fn write;
    void *context;
    long long written;
    long long limit;
    int too_large;
    int write_failed;
} output_sink;

static int write_output(void *context, const char *bytes, int length) {
    output_sink *sink = context;
    if (sink->limit > 0 && sink->written + length > sink->limit) { sink->too_large = 1; return -1; }
    if (sink->write(sink->context, bytes, length) != 0) { sink->write_failed = 1; return -1; }
    sink->written += length;
    return length;
}

static int close_output(void *context) { (void)context; return 0; }

/* 1 when the input must be refused before libxml2 parses it: a DOCTYPE before the first element (no internal
 * subset is ever parsed, so no entity expansion can start), or UTF-16/32 (a NUL byte in the first four bytes, or
 * their byte-order marks), which the byte check could not read. */
static int refuse_before_parsing(const char *input, size_t length) {
    const unsigned char *bytes = (const unsigned char *)input;
    if (length >= 2 && ((bytes[0] == 0xFE && bytes[1] == 0xFF) || (bytes[0] == 0xFF && bytes[1] == 0xFE))) return 1;
    for (size_t i = 0; i < length && i < 4; i++) if (bytes[i] == 0) return 1;
    for (size_t i = 0; i + 1 < length; i++) {
        if (bytes[i] != '<') continue;
        unsigned char next = bytes[i + 1];
        if (next == '!' && length - i >= 9 && memcmp(bytes + i, "<!DOCTYPE", 9) == 0) return 1;
        if (next != '!' && next != '?') return 0;   /* the first element: no DOCTYPE may follow */
    }
    return 0;
}

axt_status axt_transform(const axt_stylesheet *stylesheet, const char *input, size_t length,
                         const char *const *names, const char *const *values, int count,
                         long long max_output, long timeout_ms,
                         axt_write_fn write, void *write_context,
                         axt_message_fn report_fn, void *report_context) {
    global_init();
    if (length > INT_MAX || refuse_before_parsing(input, length)) {
        if (report_fn != NULL) report_fn(report_context, NULL, 0, "the input has a DOCTYPE or is not UTF-8, which is refused");
        return AXT_INPUT_REFUSED;
    }
    run_scope scope = { .root = stylesheet->root, .report = report_fn, .context = report_context, .withhold_plain = 1 };
    run_scope *saved = current;
    current = &scope;
    axs_own_parse_begin();
    axt_status status = AXT_OK;
    xmlDocPtr doc = xmlReadMemory(input, (int)length, "transform-input", NULL, XML_PARSE_NONET | XML_PARSE_NOCDATA);
    if (doc == NULL || doc->intSubset != NULL || doc->extSubset != NULL) {
        report(&scope, NULL, 0, doc == NULL ? "the input is not well-formed" : "the input has a DOCTYPE, which is refused");
        if (doc != NULL) xmlFreeDoc(doc);
        axs_own_parse_end();
        current = saved;
        return AXT_INPUT_REFUSED;
    }
    xsltTransformContextPtr ctxt = xsltNewTransformContext(stylesheet->style, doc);
    xsltSecurityPrefsPtr prefs = new_prefs();
    if (ctxt == NULL || prefs == NULL) {
        status = AXT_INTERNAL;
    } else {
        xsltSetCtxtSecurityPrefs(prefs, ctxt);
        xsltSetTransformErrorFunc(ctxt, NULL, on_message);
        const char **params = calloc((size_t)count * 2 + 1, sizeof *params);
        if (params == NULL) status = AXT_INTERNAL;
        for (int i = 0; params != NULL && i < count; i++) { params[2 * i] = names[i]; params[2 * i + 1] = values[i]; }
        if (params != NULL && xsltQuoteUserParams(ctxt, params) != 0) status = AXT_FAILED;
        free(params);
        watchdog dog = { .lock = PTHREAD_MUTEX_INITIALIZER, .done_signal = PTHREAD_COND_INITIALIZER,
                         .timeout_ms = timeout_ms, .ctxt = ctxt };
        pthread_t thread;
        int watching = 0;
        if (status == AXT_OK && timeout_ms > 0) {
            pthread_condattr_t attributes;
            pthread_condattr_init(&attributes);
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
            pthread_cond_init(&dog.done_signal, &attributes);
            pthread_condattr_destroy(&attributes);
            watching = pthread_create(&thread, NULL, watch, &dog) == 0;
            if (!watching) status = AXT_INTERNAL;
        }
        xmlDocPtr result = NULL;
        if (status == AXT_OK) result = xsltApplyStylesheetUser(stylesheet->style, doc, NULL, NULL, NULL, ctxt);
        if (watching) {
            pthread_mutex_lock(&dog.lock);
            dog.done = 1;
            pthread_cond_signal(&dog.done_signal);
            pthread_mutex_unlock(&dog.lock);
            pthread_join(thread, NULL);
        }
        if (status != AXT_OK) {
            /* set above */
        } else if (dog.fired) {
            status = AXT_TIMEOUT;
        } else if (scope.access_refused) {
            status = AXT_ACCESS_REFUSED;
        } else if (result == NULL || ctxt->state != XSLT_STATE_OK || scope.failed) {
            status = AXT_FAILED;
        } else {
            output_sink sink = { .write = write, .context = write_context, .limit = max_output };
            xmlOutputBufferPtr buffer = xmlOutputBufferCreateIO(write_output, close_output, &sink, NULL);
            if (buffer == NULL) {
                status = AXT_INTERNAL;
            } else {
                int saved_bytes = xsltSaveResultTo(buffer, result, stylesheet->style);
                int closed = xmlOutputBufferClose(buffer);
                if (sink.too_large) status = AXT_OUTPUT_TOO_LARGE;
                else if (sink.write_failed || saved_bytes < 0 || closed < 0) status = AXT_INTERNAL;
            }
        }
        if (result != NULL) xmlFreeDoc(result);
        pthread_cond_destroy(&dog.done_signal);
    }
    if (ctxt != NULL) xsltFreeTransformContext(ctxt);
    if (prefs != NULL) xsltFreeSecurityPrefs(prefs);
    xmlFreeDoc(doc);
    axs_own_parse_end();
    current = saved;
    return status;
}
