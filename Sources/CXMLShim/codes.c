/* libxml2 error numbers -> the stable diagnostic codes Amtsbote promises (Docs/diagnostics.md). */
#include "shim_internal.h"
#include <string.h>

const char *axs_code_for_parser_error(int domain, int code) {
    if (domain == XML_FROM_NAMESPACE) return "xml.namespace";
    /* Since 2.13 libxml2 reports decoding errors in the I/O domain (XML_ERR_INVALID_ENCODING from XML_FROM_IO):
     * the code decides, not the domain. */
    if (code == XML_ERR_INVALID_ENCODING || code == XML_ERR_UNKNOWN_ENCODING ||
        code == XML_ERR_UNSUPPORTED_ENCODING)
        return "xml.encoding";
    if (domain == XML_FROM_IO || domain == XML_FROM_CATALOG) return "input.external-resource-refused";
    switch (code) {
    case XML_ERR_DOCUMENT_EMPTY:
        return "xml.empty";
    case XML_ERR_INVALID_CHAR:
    case XML_ERR_INVALID_ENCODING:
    case XML_ERR_UNKNOWN_ENCODING:
    case XML_ERR_UNSUPPORTED_ENCODING:
    case XML_ERR_ENCODING_NAME:
        return "xml.encoding";
    case XML_ERR_INVALID_CHARREF:
    case XML_ERR_INVALID_DEC_CHARREF:
    case XML_ERR_INVALID_HEX_CHARREF:
        return "xml.character-reference";
    case XML_ERR_UNDECLARED_ENTITY:
    case XML_WAR_UNDECLARED_ENTITY:
        return "xml.entity-undeclared";
    case XML_ERR_NO_MEMORY:
        return "input.out-of-memory";
    default:
        return "xml.not-well-formed";
    }
}

const char *axs_code_for_validity_error(int code, const char *message) {
    switch (code) {
    case XML_SCHEMAV_ELEMENT_CONTENT:
        if (message != NULL && strstr(message, "Missing child element") != NULL) return "schema.element.missing";
        return "schema.element.unexpected";
    case XML_SCHEMAV_CVC_ELT_1:
        return "schema.element.undeclared";
    case XML_SCHEMAV_CVC_PATTERN_VALID:
        return "schema.value.pattern";
    case XML_SCHEMAV_CVC_ENUMERATION_VALID:
        return "schema.value.enumeration";
    case XML_SCHEMAV_CVC_LENGTH_VALID:
    case XML_SCHEMAV_CVC_MINLENGTH_VALID:
    case XML_SCHEMAV_CVC_MAXLENGTH_VALID:
        return "schema.value.length";
    case XML_SCHEMAV_CVC_MININCLUSIVE_VALID:
    case XML_SCHEMAV_CVC_MAXINCLUSIVE_VALID:
    case XML_SCHEMAV_CVC_MINEXCLUSIVE_VALID:
    case XML_SCHEMAV_CVC_MAXEXCLUSIVE_VALID:
        return "schema.value.range";
    case XML_SCHEMAV_CVC_TOTALDIGITS_VALID:
    case XML_SCHEMAV_CVC_FRACTIONDIGITS_VALID:
        return "schema.value.digits";
    case XML_SCHEMAV_CVC_DATATYPE_VALID_1_2_1:
    case XML_SCHEMAV_CVC_DATATYPE_VALID_1_2_2:
    case XML_SCHEMAV_CVC_DATATYPE_VALID_1_2_3:
    case XML_SCHEMAV_CVC_TYPE_3_1_1:
    case XML_SCHEMAV_CVC_TYPE_3_1_2:
    case XML_SCHEMAV_CVC_FACET_VALID:
    case XML_SCHEMAV_CVC_ATTRIBUTE_3:
    case XML_SCHEMAV_CVC_AU:
        return "schema.value.type";
    case XML_SCHEMAV_CVC_ELT_5_2_2_1:
    case XML_SCHEMAV_CVC_ELT_5_2_2_2_1:
    case XML_SCHEMAV_CVC_ELT_5_2_2_2_2:
        return "schema.value.fixed";
    case XML_SCHEMAV_CVC_COMPLEX_TYPE_2_1:
    case XML_SCHEMAV_CVC_COMPLEX_TYPE_2_3:
    case XML_SCHEMAV_CVC_COMPLEX_TYPE_2_4:
        return "schema.content.not-allowed";
    case XML_SCHEMAV_CVC_COMPLEX_TYPE_3_2_1:
    case XML_SCHEMAV_CVC_COMPLEX_TYPE_3_2_2:
        return "schema.attribute.unexpected";
    case XML_SCHEMAV_CVC_COMPLEX_TYPE_4:
        return "schema.attribute.missing";
    case XML_SCHEMAV_CVC_ELT_3_1:
    case XML_SCHEMAV_CVC_ELT_3_2_1:
    case XML_SCHEMAV_CVC_ELT_3_2_2:
        return "schema.nil";
    case XML_SCHEMAV_CVC_ELT_2:
    case XML_SCHEMAV_CVC_ELT_4_1:
    case XML_SCHEMAV_CVC_ELT_4_2:
    case XML_SCHEMAV_CVC_ELT_4_3:
    case XML_SCHEMAV_CVC_TYPE_1:
    case XML_SCHEMAV_CVC_TYPE_2:
        return "schema.type";
    case XML_SCHEMAV_CVC_IDC:
        return "schema.identity";
    case XML_SCHEMAV_CVC_WILDCARD:
        return "schema.wildcard";
    case XML_SCHEMAV_INTERNAL:
        return "schema.internal";
    default:
        return "schema.invalid";
    }
}

const char *axs_code_for_schema_parser_error(int code, const char *message) {
    switch (code) {
    case XML_SCHEMAP_FAILED_LOAD:
    case XML_SCHEMAP_WARN_UNLOCATED_SCHEMA:
    case XML_SCHEMAP_SRC_INCLUDE:
        return "schema.location-unresolvable";
    case XML_SCHEMAP_WARN_SKIP_SCHEMA:
        if (message != NULL && strstr(message, "Failed to locate") != NULL) return "schema.location-unresolvable";
        return "schema.import-skipped";
    default:
        if (message != NULL && strstr(message, "failed to load external entity") != NULL)
            return "schema.location-unresolvable";
        return "schema.compile";
    }
}
