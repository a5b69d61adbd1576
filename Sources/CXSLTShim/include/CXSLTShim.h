/*
 * CXSLTShim: the only C interface Swift sees of libxslt.
 *
 * Opaque handles and plain C types only. A compiled stylesheet is immutable and may be used by many threads at
 * once; each transformation runs on the calling thread. While a stylesheet compiles or runs, libxml2 and libxslt
 * may read files only inside the stylesheet's own folder (imports, includes, document()), never the network, and
 * write nothing: no xsl:document or extension element that writes, no directory created. Documents with a
 * DOCTYPE are refused, as in validation, and no external entity is loaded.
 */
#ifndef CXSLTSHIM_H
#define CXSLTSHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct axt_stylesheet axt_stylesheet;

/* One message of libxml2 or libxslt: the file it concerns (may be NULL), its line (0: unknown), the text. */
typedef void (*axt_message_fn)(void *context, const char *file, int line, const char *message);

/* Compiles the stylesheet at `path` (imports and includes from its folder only). NULL when it cannot be read, is
 * not well-formed, has a DOCTYPE or is no valid XSLT 1.0 stylesheet; the reasons go to `report`. */
axt_stylesheet *axt_stylesheet_compile(const char *path, axt_message_fn report, void *context);
void axt_stylesheet_free(axt_stylesheet *stylesheet);

typedef enum {
    AXT_OK = 0,
    /* The input is not well-formed or has a DOCTYPE. */
    AXT_INPUT_REFUSED = 1,
    /* The stylesheet failed at run time (an XPath error, xsl:message terminate="yes", the recursion limit). */
    AXT_FAILED = 2,
    /* The stylesheet tried to read outside its folder, to reach the network, or to write. */
    AXT_ACCESS_REFUSED = 3,
    /* The time limit ran out; the transformation was stopped. */
    AXT_TIMEOUT = 4,
    /* The output grew past its limit. */
    AXT_OUTPUT_TOO_LARGE = 5,
    /* Out of memory, or the output could not be written. */
    AXT_INTERNAL = 6
} axt_status;

/* Receives the serialised output in pieces; returns 0 to go on, anything else to stop (AXT_INTERNAL). */
typedef int (*axt_write_fn)(void *context, const char *bytes, int length);

/* Transforms `input` with `stylesheet`. Parameters are string values (`names[i]` = `values[i]`, never evaluated as
 * XPath). The output is serialised as the stylesheet's xsl:output says, at most `max_output` bytes (0: no limit),
 * within `timeout_ms` milliseconds (0: no limit). Run-time messages go to `report`: libxslt's own words about the
 * stylesheet (with the stylesheet's file and line where libxslt names them); the text of an xsl:message, which may
 * quote the input, is never passed on (it arrives as "xsl:message"). */
axt_status axt_transform(const axt_stylesheet *stylesheet, const char *input, size_t length,
                         const char *const *names, const char *const *values, int count,
                         long long max_output, long timeout_ms,
                         axt_write_fn write, void *write_context,
                         axt_message_fn report, void *report_context);

/* The libxslt version in use ("1.1.35"). */
const char *axt_libxslt_version(void);

#ifdef __cplusplus
}
#endif
#endif
