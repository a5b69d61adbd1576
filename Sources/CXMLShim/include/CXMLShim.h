/*
 * CXMLShim: the only C interface Swift sees of libxml2.
 *
 * Opaque handles and plain C types only: no libxml2 header is included here, so Swift code that also imports
 * Foundation never meets libxml2's ICU declarations. Every function is safe to call from any thread unless
 * noted; a document handle (axs_doc) belongs to one thread at a time.
 */
#ifndef CXMLSHIM_H
#define CXMLSHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- process set-up --------------------------------------------------------------------------------------- */

/**
 * Initialises libxml2 once per process and installs Amtsbote's external entity loader. Idempotent.
 *
 * The loader is process-wide in libxml2, so it chains: during Amtsbote's own parses on a thread (documents fed with
 * axs_doc_feed/axs_doc_finish, including the callbacks they make, code lists, catalogs) it refuses every load,
 * except schema files while a schema compiles; everywhere else it hands the load to the loader that was installed
 * before (libxml2's default, or the host program's). A host that installs its own loader after this call replaces
 * Amtsbote's: install it before, and it is chained.
 */
void axs_global_init(void);

/**
 * Marks an Amtsbote parse on this thread for a layer outside this shim (the XSLT shim): until the matching
 * axs_own_parse_end, libxml2's external entity loader refuses every load on this thread, and libxml2's
 * thread-wide error messages stay inside. Nested calls count.
 */
void axs_own_parse_begin(void);
void axs_own_parse_end(void);

/** The libxml2 loaded at run time, as libxml2 spells its version (xmlParserVersion): "20914" for 2.9.14, possibly
 * followed by a suffix. */
const char *axs_libxml2_version(void);

/** Number of external resources the loader refused during Amtsbote's own parses outside schema compilation. */
uint64_t axs_refused_instance_loads(void);
/** The same, counted for the calling thread only (a parse runs on one thread: exact even with other threads busy). */
uint64_t axs_refused_instance_loads_on_this_thread(void);
/** Messages libxml2 sent to its thread-wide error functions during Amtsbote's own parses (taken over there, so
 * none is printed): in the process, and on the calling thread. */
uint64_t axs_stray_messages(void);
uint64_t axs_stray_messages_on_this_thread(void);

/** Sets libxml2's process-wide entity-substitution default, as other libraries in the same process may do. Only
 * for tests that prove the safe profile does not depend on it. Returns the previous value. */
int axs_test_set_substitute_entities_default(int value);

/* ---- test hooks (embedding hygiene) --------------------------------------------------------------------- */

/** Test hook: installs a probe external entity loader process-wide, as a host program that set its own loader
 * before Amtsbote would. Works only before the first axs_global_init (returns 0 afterwards, 1 when installed). The
 * probe answers every load with the document "host" and counts its calls. */
int axs_test_install_host_loader(void);
/** Test hook: how many loads the probe of axs_test_install_host_loader answered. */
uint64_t axs_test_host_loader_calls(void);
/** Test hook: loads `url` through libxml2's process-wide external entity loader, as a host program does for its own
 * documents. 1 when a resource was returned, 0 when the load was refused, -1 when no context could be made. */
int axs_test_host_load(const char *url);
/** Test hook: the same load, made from inside an Amtsbote document parse (its root element's selection callback).
 * Same results; -1 also when the callback did not run. */
int axs_test_host_load_during_parse(const char *url);
/** Test hook: sets error functions of a host program on this thread, sends a message to libxml2's generic channel
 * inside an own parse, validates `bytes` (no schema) and puts the thread's functions back as they were. `*stray`: libxml2 messages the parse took over; `*host_calls`: messages
 * that reached the host's functions instead. Returns 1 when the host's functions were in place after the parse. */
int axs_test_stray_messages_stay_inside(const char *bytes, size_t length, uint64_t *stray, int *host_calls);
/** Test hook: the most schema compilations that ran at once in this process so far (1 when serialised). */
int axs_test_max_concurrent_compiles(void);

/* ---- diagnostics ------------------------------------------------------------------------------------------ */

enum {
    AXS_SEVERITY_WARNING = 0,
    AXS_SEVERITY_ERROR = 1,
    AXS_SEVERITY_FATAL = 2
};

/** One finding, valid only during the callback that receives it. */
typedef struct {
    int severity;          /* AXS_SEVERITY_* */
    const char *code;      /* stable code, e.g. "schema.value.pattern" (static storage) */
    long line;             /* 1-based; 0 when unknown */
    long column;           /* 1-based; 0 when unknown */
    const char *file;      /* file the finding is in (schema file at load time); may be NULL */
    const char *path;      /* element path such as /p:root/p:child[3]; may be NULL or empty */
    const char *message;   /* human-readable message without trailing newline */
} axs_diagnostic;

typedef void (*axs_diagnostic_fn)(void *context, const axs_diagnostic *diagnostic);

/* ---- catalogs and schemas --------------------------------------------------------------------------------- */

typedef struct axs_catalog axs_catalog;
typedef struct axs_schema axs_schema;

/** Loads an OASIS XML catalog file (not the process-wide catalogs). NULL when it cannot be read. */
axs_catalog *axs_catalog_load(const char *path);
void axs_catalog_free(axs_catalog *catalog);

/**
 * Compiles an XSD. External documents resolve only through `catalogs` or to files under one of `allowed_roots`
 * (absolute, canonical directory paths); everything else is refused and reported. Diagnostics carry the schema
 * file and line. Returns NULL when the schema cannot be compiled or a location could not be resolved.
 * Safe from any thread: compilations in the process are serialised internally (concurrent calls wait for each
 * other). Do not compile from inside `on_diagnostic`. The result is read-only and shareable.
 */
axs_schema *axs_schema_compile(const char *xsd_path,
                               axs_catalog *const *catalogs, int catalog_count,
                               const char *const *allowed_roots, int root_count,
                               axs_diagnostic_fn on_diagnostic, void *context);
void axs_schema_free(axs_schema *schema);

/**
 * Finds the elements whose XÖV code list (listURI, listVersionID) the schema fixes or defaults, by reading the
 * schema's documents once more. Done once per schema, on first call (thread-safe); call it before validating with
 * code lists. Without it, only lists named in the documents themselves are checked.
 */
void axs_schema_prepare_codes(axs_schema *schema);

/* ---- code lists ------------------------------------------------------------------------------------------- */

/** One OASIS genericode code list: identification and the values of its key column. */
typedef struct {
    char *short_name;
    char *version;                 /* Identification/Version: what listVersionID names */
    char *canonical_uri;           /* what listURI names */
    char *canonical_version_uri;
    char *key_column;              /* the column whose values are the codes */
    char **values;
    int value_count;
    int not_genericode;            /* a well-formed XML file that is not a genericode CodeList */
    char error[512];               /* empty when the list was read */
} axs_genericode;

/** Reads a genericode file (no DTD, no entities, no network). NULL only when memory is exhausted. */
axs_genericode *axs_genericode_load(const char *path);
void axs_genericode_free(axs_genericode *list);

/* ---- documents -------------------------------------------------------------------------------------------- */

/** Limits enforced while the bytes arrive; 0 means "no limit" for the byte and text limits. */
typedef struct {
    int64_t max_bytes;               /* total document size */
    int32_t max_depth;               /* element nesting */
    int32_t max_attributes;          /* attributes + namespace declarations per start tag (byte pre-scan) */
    int64_t max_text_bytes;          /* one text node (characters between two tags) */
    int32_t max_diagnostics;         /* findings reported per document before truncation */
    int64_t max_milliseconds;        /* wall time from the first byte, checked between chunks and every 256 start
                                        tags; 0 = none */
} axs_limits;

/** The root element, handed to the schema selector. Strings are NUL-terminated UTF-8, valid during the call. */
typedef struct {
    const char *namespace_uri;       /* "" when none */
    const char *local_name;
    const char *prefix;              /* NULL when the root uses the default namespace or none */
    const char *const *attribute_names;       /* local names of the unqualified root attributes */
    const char *const *attribute_values;
    int attribute_count;
    long line;
    long column;
} axs_root;

/** Returns the compiled schema to validate the document with, or NULL (the selector reports why itself). */
typedef const axs_schema *(*axs_select_fn)(void *context, const axs_root *root);

typedef struct axs_doc axs_doc;

/** Summary of a finished document. */
typedef struct {
    int well_formed;      /* no well-formedness error */
    int schema_applied;   /* a schema was selected and ran over the whole document */
    int schema_valid;     /* the schema validator reported no error */
    int stopped;          /* parsing stopped early (limit, DOCTYPE, fatal error) */
    int64_t bytes;        /* bytes fed */
    int64_t errors;       /* error findings, including suppressed duplicates */
} axs_result;

/**
 * Starts a document. `display_name` names it in messages. Callbacks run synchronously inside feed/finish on the
 * calling thread. NULL only when memory is exhausted.
 */
axs_doc *axs_doc_new(const char *display_name, const axs_limits *limits,
                     axs_select_fn select, axs_diagnostic_fn on_diagnostic, void *context);

/** Feeds the next bytes. Returns 0 to continue, 1 when the document is decided and further bytes are ignored. */
int axs_doc_feed(axs_doc *doc, const char *bytes, size_t length);

/** Ends the input, runs the final checks and fills `result`. */
void axs_doc_finish(axs_doc *doc, axs_result *result);

/**
 * Elements whose text to capture while parsing (routing keys, message ids), in the same pass. Each path is
 * '/'-separated local names below the root element, e.g. "nachrichtenkopf.g2g/leser/kennung"; namespaces are not
 * compared; the first occurrence wins; at most 8 paths of at most 16 steps, values up to 256 bytes. A set is
 * parsed once and shared read-only by any number of documents. NULL when a path is empty or too long.
 */
typedef struct axs_capture_set axs_capture_set;
axs_capture_set *axs_capture_set_new(const char *const *paths, int count);
void axs_capture_set_free(axs_capture_set *set);

/** Captures this set in this document. Call before the root's children arrive (for example from the schema
 * selector); the set must outlive the document. */
void axs_doc_use_captures(axs_doc *doc, const axs_capture_set *set);

/** The captured text of path `index` (NUL-terminated, not trimmed), or NULL when the element did not occur or its
 * text was longer than 256 bytes. Valid until the document is freed. */
const char *axs_doc_capture(const axs_doc *doc, int index);

/** What a document says about one code, for checking against code lists after the pass. */
typedef struct {
    int kind;                      /* AXS_CODE_VALUE: an XÖV code element; AXS_CODE_BEHOERDENKENNUNG: leser/autor kennung */
    const char *list_uri;          /* AXS_CODE_VALUE: listURI (instance, else schema) */
    const char *list_version;      /* listVersionID, or NULL when neither instance nor schema names one */
    const char *value;             /* the text, whitespace-trimmed */
    int value_too_long;            /* longer than 256 bytes: `value` is cut */
    long line;
    long column;
    const char *path;
} axs_code_observation;

enum { AXS_CODE_VALUE = 0, AXS_CODE_BEHOERDENKENNUNG = 1 };

/** Collects code observations in this document (off by default). Call before feeding. */
void axs_doc_collect_codes(axs_doc *doc, int on);
/** Observations so far; strings valid until the document is freed. */
int axs_doc_code_count(const axs_doc *doc);
int axs_doc_code_at(const axs_doc *doc, int index, axs_code_observation *out);
/** Observations not kept because the document had more than the cap (100,000). */
int axs_doc_codes_dropped(const axs_doc *doc);

void axs_doc_free(axs_doc *doc);

/* The prefix the document binds to `uri` among the elements open now, innermost first: "" for the default
 * namespace, NULL when none is in that namespace. Call only from within a callback of this document. */
const char *axs_doc_prefix_for(const axs_doc *d, const char *uri);

#ifdef __cplusplus
}
#endif
#endif
