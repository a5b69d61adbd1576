/* Internal declarations shared by the shim's C files. Never included by Swift. */
#ifndef CXMLSHIM_INTERNAL_H
#define CXMLSHIM_INTERNAL_H

#include "include/CXMLShim.h"
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>
#include <libxml/xmlschemas.h>
#include <libxml/catalog.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlIO.h>
#include <libxml/uri.h>
#include <pthread.h>

/* libxml2 2.12 made the structured-error callback take a const error; the shim's handlers follow the headers. */
#if LIBXML_VERSION >= 21200
typedef const xmlError *axs_error;
#else
typedef xmlError *axs_error;
#endif

struct axs_catalog {
    xmlCatalogPtr catalog;
};

/* An element whose XÖV code list the schema fixes or defaults (listURI / listVersionID). */
typedef struct {
    char *ns;
    char *local;
    char *uri;
    char *version;    /* NULL when the schema fixes only the list */
    int conflict;     /* the same name carries different lists in different places: not used */
} axs_code_fixed;

struct axs_schema {
    xmlSchemaPtr xsd;
    char **documents;             /* real paths of the documents it was compiled from */
    int document_count;
    /* Elements with schema-fixed code lists: scanned from `documents` once, on first need (axs_schema_prepare_codes). */
    pthread_mutex_t codes_lock;
    _Atomic int codes_scanned;
    axs_code_fixed *fixed;
    int fixed_count;
    int fixed_capacity;
};

#define AXS_MAX_LOADED_DOCUMENTS 1024

/* While a schema compiles on this thread, the loader answers from this scope; otherwise it refuses everything. */
typedef struct {
    axs_catalog *const *catalogs;
    int catalog_count;
    const char *const *roots;
    int root_count;
    char last_refused[1024];    /* last location the loader refused, for the load-time diagnostic */
    int refused;
    /* Documents the shim synthesised (see schema.c), served from memory under these locations. */
    const char *const *memory_urls;
    const char *const *memory_documents;
    int memory_count;
    /* Files the loader served (real paths, malloc'd), for the code-list scan after compiling. */
    char *loaded[AXS_MAX_LOADED_DOCUMENTS];
    int loaded_count;
} axs_resolve_scope;

/* Code lists (codelists.c). */
void axs_schema_scan_codes(axs_schema *schema, char *const *paths, int count);
const axs_code_fixed *axs_schema_fixed_code(const axs_schema *schema, const char *ns, const char *local);
void axs_schema_free_codes(axs_schema *schema);
/* The targetNamespace of an XSD file (malloc'd), NULL when it has none or cannot be read. */
char *axs_xsd_target_namespace(const char *path);

axs_resolve_scope *axs_loader_enter(axs_resolve_scope *scope);   /* returns the enclosing scope */
void axs_loader_leave(axs_resolve_scope *enclosing);
/* Marks an Amtsbote parse (document, code list, catalog) on this thread: while one runs, the loader refuses every
 * load outside a schema scope; otherwise it hands loads to the loader the process had before (see loader.c). */
void axs_own_parse_enter(void);
void axs_own_parse_leave(void);
/* A message libxml2 sent to the thread's error functions during an own parse: `error` for the structured
 * channel, else the generic channel's format string (never formatted: its arguments may quote document bytes). */
typedef void (*axs_stray_report)(void *data, axs_error error, const char *generic_format);
/* As axs_own_parse_enter; stray messages go to `report` (NULL: counted only) until the matching leave, which gives
 * them back to the enclosing own parse's reporter. */
void axs_own_parse_enter_reporting(axs_stray_report report, void *data);
/* 1 once axs_global_init has installed the loader. */
int axs_global_init_done(void);

/* Stable diagnostic codes for libxml2 errors. */
const char *axs_code_for_parser_error(int domain, int code);
const char *axs_code_for_validity_error(int code, const char *message);
const char *axs_code_for_schema_parser_error(int code, const char *message);

/* Byte pre-scan: bounded attributes per start tag, before libxml2 sees the bytes. */
typedef struct {
    int state;
    unsigned char last1; /* the last two bytes of the previous chunk, for closes split across chunks */
    unsigned char last2;
    int32_t attributes;  /* '=' outside quotes in the current start tag */
    int32_t limit;
    size_t tag_start;    /* offset of the current tag's '<' in the chunk being scanned */
    int tag_started_here;
} axs_prescan;

void axs_prescan_init(axs_prescan *scan, int32_t max_attributes);
/* Returns the number of bytes that are safe to feed; less than `length` when a start tag exceeds the limit (then
 * the offset of that tag's '<' when the tag began in this chunk). */
size_t axs_prescan_run(axs_prescan *scan, const unsigned char *bytes, size_t length);

#endif
