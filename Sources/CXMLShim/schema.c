/* Schema compilation with load-time diagnostics (schema file and line). */
#include "shim_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    axs_diagnostic_fn on_diagnostic;
    void *context;
    axs_resolve_scope *scope;
    int errors;
} compile_state;

static void strip_newline(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
}

static void schema_parser_error(void *data, xmlErrorPtr error) {
    compile_state *state = data;
    if (error == NULL) return;
    char message[2048];
    snprintf(message, sizeof message, "%s", error->message ? error->message : "unknown error");
    strip_newline(message);
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
    axs_diagnostic d = {
        .severity = severity, .code = code, .line = error->line, .column = 0,
        .file = error->file, .path = NULL, .message = message,
    };
    if (state->on_diagnostic) state->on_diagnostic(state->context, &d);
}

axs_schema *axs_schema_compile(const char *xsd_path,
                               axs_catalog *const *catalogs, int catalog_count,
                               const char *const *allowed_roots, int root_count,
                               axs_diagnostic_fn on_diagnostic, void *context) {
    axs_global_init();
    axs_resolve_scope scope = {
        .catalogs = catalogs, .catalog_count = catalog_count,
        .roots = allowed_roots, .root_count = root_count,
    };
    compile_state state = { .on_diagnostic = on_diagnostic, .context = context, .scope = &scope };

    xmlSchemaParserCtxtPtr parser = xmlSchemaNewParserCtxt(xsd_path);
    if (parser == NULL) return NULL;
    xmlSchemaSetParserStructuredErrors(parser, schema_parser_error, &state);
    axs_loader_enter(&scope);
    xmlSchemaPtr xsd = xmlSchemaParse(parser);
    axs_loader_leave();
    xmlSchemaFreeParserCtxt(parser);

    if (xsd == NULL || state.errors > 0) {
        if (xsd != NULL) xmlSchemaFree(xsd);
        if (state.errors == 0) {
            axs_diagnostic d = {
                .severity = AXS_SEVERITY_ERROR, .code = "schema.compile", .line = 0, .column = 0,
                .file = xsd_path, .path = NULL, .message = "the schema could not be compiled",
            };
            if (on_diagnostic) on_diagnostic(context, &d);
        }
        return NULL;
    }
    axs_schema *schema = calloc(1, sizeof *schema);
    if (schema == NULL) { xmlSchemaFree(xsd); return NULL; }
    schema->xsd = xsd;
    return schema;
}

void axs_schema_free(axs_schema *schema) {
    if (schema == NULL) return;
    xmlSchemaFree(schema->xsd);
    free(schema);
}
