#define _GNU_SOURCE
/* XÖV code lists: reading genericode files, and finding in a schema's documents which elements carry a code whose
 * list (listURI / listVersionID) the schema fixes or defaults, so an instance may leave the attributes out. */
#include "shim_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>

#define XS_NS "http://www.w3.org/2001/XMLSchema"
#define MAX_READ_BYTES (64L * 1024 * 1024)

/* Reads a whole (small, trusted-but-checked) file and parses it without DTD, entities or network. Reading the
 * bytes ourselves keeps the deny-all entity loader out of it. NULL with `error` set on failure. */
static xmlDocPtr read_document(const char *path, char *error, size_t error_size) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) { snprintf(error, error_size, "cannot open the file"); return NULL; }
    char *bytes = NULL;
    size_t length = 0, capacity = 0;
    for (;;) {
        if (length + 65536 > capacity) {
            capacity = capacity ? capacity * 2 : 262144;
            char *grown = realloc(bytes, capacity);
            if (grown == NULL) { free(bytes); fclose(file); snprintf(error, error_size, "out of memory"); return NULL; }
            bytes = grown;
        }
        size_t n = fread(bytes + length, 1, capacity - length, file);
        length += n;
        if (n == 0) break;
        if ((long)length > MAX_READ_BYTES) {
            free(bytes); fclose(file);
            snprintf(error, error_size, "larger than %ld bytes", MAX_READ_BYTES);
            return NULL;
        }
    }
    fclose(file);
    if (length >= 9 && memmem(bytes, length, "<!DOCTYPE", 9) != NULL) {
        free(bytes);
        snprintf(error, error_size, "has a DOCTYPE declaration (refused)");
        return NULL;
    }
    xmlParserCtxtPtr parser = xmlNewParserCtxt();
    if (parser == NULL) { free(bytes); snprintf(error, error_size, "out of memory"); return NULL; }
    axs_own_parse_enter();
    xmlDocPtr doc = xmlCtxtReadMemory(parser, bytes, (int)length, path, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    axs_own_parse_leave();
    if (doc == NULL) {
        const xmlError *last = xmlCtxtGetLastError(parser);
        snprintf(error, error_size, "line %d: %s", last ? last->line : 0,
                 last && last->message ? last->message : "not well-formed");
        size_t n = strlen(error);
        while (n > 0 && (error[n - 1] == '\n' || error[n - 1] == ' ')) error[--n] = '\0';
    }
    xmlFreeParserCtxt(parser);
    free(bytes);
    return doc;
}

static int is_named(xmlNodePtr node, const char *local) {
    return node != NULL && node->type == XML_ELEMENT_NODE && strcmp((const char *)node->name, local) == 0;
}

static xmlNodePtr child_named(xmlNodePtr parent, const char *local) {
    for (xmlNodePtr c = parent ? parent->children : NULL; c != NULL; c = c->next)
        if (is_named(c, local)) return c;
    return NULL;
}

static char *text_of(xmlNodePtr node) {
    if (node == NULL) return NULL;
    xmlChar *content = xmlNodeGetContent(node);
    if (content == NULL) return NULL;
    /* xs:token semantics for codes: leading and trailing whitespace do not count. */
    char *start = (char *)content;
    while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r') start++;
    char *result = strdup(start);
    xmlFree(content);
    if (result == NULL) return NULL;
    size_t n = strlen(result);
    while (n > 0 && (result[n - 1] == ' ' || result[n - 1] == '\t' || result[n - 1] == '\n' || result[n - 1] == '\r'))
        result[--n] = '\0';
    return result;
}

char *axs_xsd_target_namespace(const char *path) {
    char error[512];
    xmlDocPtr doc = read_document(path, error, sizeof error);
    if (doc == NULL) return NULL;
    xmlChar *tns = xmlGetProp(xmlDocGetRootElement(doc), (const xmlChar *)"targetNamespace");
    char *copy = tns ? strdup((const char *)tns) : NULL;
    if (tns) xmlFree(tns);
    xmlFreeDoc(doc);
    return copy;
}

/* ---- genericode ------------------------------------------------------------------------------------------- */

axs_genericode *axs_genericode_load(const char *path) {
    axs_global_init();
    axs_genericode *list = calloc(1, sizeof *list);
    if (list == NULL) return NULL;
    xmlDocPtr doc = read_document(path, list->error, sizeof list->error);
    if (doc == NULL) return list;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!is_named(root, "CodeList") || root->ns == NULL ||
        strncmp((const char *)root->ns->href, "http://docs.oasis-open.org/codelist/ns/genericode/", 50) != 0) {
        snprintf(list->error, sizeof list->error, "not a genericode CodeList");
        list->not_genericode = 1;
        xmlFreeDoc(doc);
        return list;
    }
    xmlNodePtr identification = child_named(root, "Identification");
    list->short_name = text_of(child_named(identification, "ShortName"));
    list->version = text_of(child_named(identification, "Version"));
    list->canonical_uri = text_of(child_named(identification, "CanonicalUri"));
    list->canonical_version_uri = text_of(child_named(identification, "CanonicalVersionUri"));

    /* The key column: the first Key's ColumnRef; without a Key, a column named "code", else the first column. */
    xmlNodePtr columns = child_named(root, "ColumnSet");
    xmlChar *key = NULL;
    xmlNodePtr key_node = child_named(columns, "Key");
    if (key_node != NULL) key = xmlGetProp(child_named(key_node, "ColumnRef"), (const xmlChar *)"Ref");
    int key_position = -1, position = 0;
    for (xmlNodePtr c = columns ? columns->children : NULL; c != NULL; c = c->next) {
        if (!is_named(c, "Column")) continue;
        xmlChar *id = xmlGetProp(c, (const xmlChar *)"Id");
        if (key == NULL && id != NULL && strcmp((const char *)id, "code") == 0) key = xmlStrdup(id);
        if (key != NULL && id != NULL && xmlStrEqual(id, key)) key_position = position;
        if (id) xmlFree(id);
        position++;
    }
    if (key == NULL && position > 0) key_position = 0;
    list->key_column = key ? strdup((const char *)key) : NULL;

    xmlNodePtr rows = child_named(root, "SimpleCodeList");
    int capacity = 0;
    for (xmlNodePtr row = rows ? rows->children : NULL; row != NULL; row = row->next) {
        if (!is_named(row, "Row")) continue;
        int index = 0;
        for (xmlNodePtr value = row->children; value != NULL; value = value->next) {
            if (!is_named(value, "Value")) continue;
            xmlChar *ref = xmlGetProp(value, (const xmlChar *)"ColumnRef");
            int match = ref != NULL ? (key != NULL && xmlStrEqual(ref, key)) : index == key_position;
            if (ref) xmlFree(ref);
            index++;
            if (!match) continue;
            char *text = text_of(child_named(value, "SimpleValue"));
            if (text == NULL) continue;
            if (list->value_count == capacity) {
                capacity = capacity ? capacity * 2 : 64;
                char **grown = realloc(list->values, (size_t)capacity * sizeof *grown);
                if (grown == NULL) { free(text); break; }
                list->values = grown;
            }
            list->values[list->value_count++] = text;
            break;
        }
    }
    if (key) xmlFree(key);
    if (list->canonical_uri == NULL) snprintf(list->error, sizeof list->error, "the list has no CanonicalUri");
    else if (list->version == NULL) snprintf(list->error, sizeof list->error, "the list has no Version");
    xmlFreeDoc(doc);
    return list;
}

void axs_genericode_free(axs_genericode *list) {
    if (list == NULL) return;
    free(list->short_name);
    free(list->version);
    free(list->canonical_uri);
    free(list->canonical_version_uri);
    free(list->key_column);
    for (int i = 0; i < list->value_count; i++) free(list->values[i]);
    free(list->values);
    free(list);
}

/* ---- fixed code lists in schemas ---------------------------------------------------------------------------- */

typedef struct {
    char *key;        /* "{namespace}name" of a named type; NULL for an element's anonymous type */
    char *uri;        /* fixed or default listURI declared on the type itself */
    char *version;
    char *base;       /* key of the base type (restriction or extension) */
} type_info;

typedef struct {
    char *ns;
    char *local;
    char *type_key;   /* the element's named type, or NULL */
    type_info own;    /* its anonymous type */
} element_info;

typedef struct {
    type_info *types;
    int type_count, type_capacity;
    element_info *elements;
    int element_count, element_capacity;
} scan_state;

static char *qname_key(xmlNodePtr node, const xmlChar *qname) {
    if (qname == NULL) return NULL;
    const xmlChar *colon = xmlStrchr(qname, ':');
    xmlChar *prefix = colon ? xmlStrndup(qname, (int)(colon - qname)) : NULL;
    xmlNsPtr ns = xmlSearchNs(node->doc, node, prefix);
    if (prefix) xmlFree(prefix);
    const char *local = (const char *)(colon ? colon + 1 : qname);
    const char *href = ns ? (const char *)ns->href : "";
    if (strcmp(href, XS_NS) == 0) return NULL;
    size_t size = strlen(href) + strlen(local) + 3;
    char *key = malloc(size);
    if (key) snprintf(key, size, "{%s}%s", href, local);
    return key;
}

static char *fixed_or_default(xmlNodePtr attribute) {
    xmlChar *value = xmlGetProp(attribute, (const xmlChar *)"fixed");
    if (value == NULL) value = xmlGetProp(attribute, (const xmlChar *)"default");
    if (value == NULL) return NULL;
    char *copy = strdup((const char *)value);
    xmlFree(value);
    return copy;
}

/* The listURI / listVersionID a complex type declares, and its base, without entering nested elements. */
static void read_type(xmlNodePtr node, type_info *info) {
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || c->ns == NULL || strcmp((const char *)c->ns->href, XS_NS) != 0) continue;
        if (is_named(c, "element") || is_named(c, "annotation")) continue;
        if (is_named(c, "attribute")) {
            xmlChar *name = xmlGetProp(c, (const xmlChar *)"name");
            if (name != NULL && strcmp((const char *)name, "listURI") == 0 && info->uri == NULL) info->uri = fixed_or_default(c);
            if (name != NULL && strcmp((const char *)name, "listVersionID") == 0 && info->version == NULL)
                info->version = fixed_or_default(c);
            if (name) xmlFree(name);
            continue;
        }
        if ((is_named(c, "restriction") || is_named(c, "extension")) && info->base == NULL) {
            xmlChar *base = xmlGetProp(c, (const xmlChar *)"base");
            info->base = qname_key(c, base);
            if (base) xmlFree(base);
        }
        read_type(c, info);
    }
}

/* Room for one more item in a growing array; 0 when memory is exhausted. */
static int make_room(void **items, int count, int *capacity, size_t item_size, int first) {
    if (count < *capacity) return 1;
    int grown_capacity = *capacity ? *capacity * 2 : first;
    void *grown = realloc(*items, (size_t)grown_capacity * item_size);
    if (grown == NULL) return 0;
    *items = grown;
    *capacity = grown_capacity;
    return 1;
}

static void scan_node(xmlNodePtr node, const char *tns, int qualified_default, scan_state *state) {
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || c->ns == NULL || strcmp((const char *)c->ns->href, XS_NS) != 0) continue;
        int global = is_named(node, "schema");
        if (is_named(c, "complexType") && global) {
            xmlChar *name = xmlGetProp(c, (const xmlChar *)"name");
            if (name != NULL && state->type_count < 100000) {
                if (!make_room((void **)&state->types, state->type_count, &state->type_capacity, sizeof *state->types, 256)) {
                    xmlFree(name);
                    return;
                }
                type_info *info = &state->types[state->type_count++];
                memset(info, 0, sizeof *info);
                size_t size = strlen(tns) + strlen((const char *)name) + 3;
                info->key = malloc(size);
                if (info->key) snprintf(info->key, size, "{%s}%s", tns, (const char *)name);
                read_type(c, info);
            }
            if (name) xmlFree(name);
        } else if (is_named(c, "element")) {
            xmlChar *name = xmlGetProp(c, (const xmlChar *)"name");
            if (name != NULL && state->element_count < 1000000) {
                if (!make_room((void **)&state->elements, state->element_count, &state->element_capacity,
                               sizeof *state->elements, 1024)) {
                    xmlFree(name);
                    return;
                }
                element_info *e = &state->elements[state->element_count++];
                memset(e, 0, sizeof *e);
                xmlChar *form = xmlGetProp(c, (const xmlChar *)"form");
                int qualified = global || (form ? strcmp((const char *)form, "qualified") == 0 : qualified_default);
                if (form) xmlFree(form);
                e->ns = strdup(qualified ? tns : "");
                e->local = strdup((const char *)name);
                xmlChar *type = xmlGetProp(c, (const xmlChar *)"type");
                e->type_key = qname_key(c, type);
                if (type) xmlFree(type);
                xmlNodePtr anonymous = child_named(c, "complexType");
                if (anonymous != NULL) read_type(anonymous, &e->own);
            }
            if (name) xmlFree(name);
        }
        scan_node(c, tns, qualified_default, state);
    }
}

static const type_info *find_type(const scan_state *state, const char *key) {
    if (key == NULL) return NULL;
    for (int i = 0; i < state->type_count; i++)
        if (state->types[i].key != NULL && strcmp(state->types[i].key, key) == 0) return &state->types[i];
    return NULL;
}

/* listURI / listVersionID in effect for a type: its own, else inherited along the base chain. */
static void effective(const scan_state *state, const type_info *type, const char **uri, const char **version) {
    for (int guard = 0; type != NULL && guard < 32 && (*uri == NULL || *version == NULL); guard++) {
        if (*uri == NULL) *uri = type->uri;
        if (*version == NULL) *version = type->version;
        type = find_type(state, type->base);
    }
}

static void free_type(type_info *t) { free(t->key); free(t->uri); free(t->version); free(t->base); }

void axs_schema_scan_codes(axs_schema *schema, char *const *paths, int count) {
    scan_state state = {0};
    for (int i = 0; i < count; i++) {
        char error[512];
        xmlDocPtr doc = read_document(paths[i], error, sizeof error);
        if (doc == NULL) continue;
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (is_named(root, "schema")) {
            xmlChar *tns = xmlGetProp(root, (const xmlChar *)"targetNamespace");
            xmlChar *efd = xmlGetProp(root, (const xmlChar *)"elementFormDefault");
            scan_node(root, tns ? (const char *)tns : "", efd != NULL && strcmp((const char *)efd, "qualified") == 0,
                      &state);
            if (tns) xmlFree(tns);
            if (efd) xmlFree(efd);
        }
        xmlFreeDoc(doc);
    }
    for (int i = 0; i < state.element_count; i++) {
        element_info *e = &state.elements[i];
        const char *uri = NULL, *version = NULL;
        effective(&state, &e->own, &uri, &version);
        effective(&state, find_type(&state, e->type_key), &uri, &version);
        if (uri == NULL || e->ns == NULL || e->local == NULL) continue;
        int known = 0;
        for (int j = 0; j < schema->fixed_count; j++) {
            axs_code_fixed *f = &schema->fixed[j];
            if (strcmp(f->ns, e->ns) != 0 || strcmp(f->local, e->local) != 0) continue;
            known = 1;
            /* One name, two lists (local elements in different contexts): not decidable by name, so dropped. */
            if (strcmp(f->uri, uri) != 0 || strcmp(f->version ? f->version : "", version ? version : "") != 0)
                f->conflict = 1;
        }
        if (known) continue;
        if (!make_room((void **)&schema->fixed, schema->fixed_count, &schema->fixed_capacity, sizeof *schema->fixed, 64)) break;
        axs_code_fixed *f = &schema->fixed[schema->fixed_count++];
        f->ns = strdup(e->ns);
        f->local = strdup(e->local);
        f->uri = strdup(uri);
        f->version = version ? strdup(version) : NULL;
        f->conflict = 0;
    }
    for (int i = 0; i < state.type_count; i++) free_type(&state.types[i]);
    for (int i = 0; i < state.element_count; i++) {
        free(state.elements[i].ns); free(state.elements[i].local); free(state.elements[i].type_key);
        free_type(&state.elements[i].own);
    }
    free(state.types);
    free(state.elements);
}

void axs_schema_prepare_codes(axs_schema *schema) {
    if (schema == NULL || atomic_load(&schema->codes_scanned)) return;
    pthread_mutex_lock(&schema->codes_lock);
    if (!atomic_load(&schema->codes_scanned)) {
        axs_schema_scan_codes(schema, schema->documents, schema->document_count);
        atomic_store(&schema->codes_scanned, 1);
    }
    pthread_mutex_unlock(&schema->codes_lock);
}

const axs_code_fixed *axs_schema_fixed_code(const axs_schema *schema, const char *ns, const char *local) {
    if (schema == NULL || !atomic_load(&((axs_schema *)schema)->codes_scanned)) return NULL;
    for (int i = 0; i < schema->fixed_count; i++) {
        const axs_code_fixed *f = &schema->fixed[i];
        if (!f->conflict && strcmp(f->local, local) == 0 && strcmp(f->ns, ns) == 0) return f;
    }
    return NULL;
}

void axs_schema_free_codes(axs_schema *schema) {
    for (int i = 0; i < schema->fixed_count; i++) {
        free(schema->fixed[i].ns); free(schema->fixed[i].local); free(schema->fixed[i].uri); free(schema->fixed[i].version);
    }
    free(schema->fixed);
}
