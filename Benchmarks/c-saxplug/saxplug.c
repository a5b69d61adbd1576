/* Reference point for the benchmark: the same libxml2 path Amtsbote uses (push parser + xmlSchemaSAXPlug, 256 KiB
 * reads), in plain C with no limits, no paths and no diagnostics kept. Not part of the product.
 *
 *   cc -O2 $(pkg-config --cflags libxml-2.0) saxplug.c $(pkg-config --libs libxml-2.0) -o saxplug
 *   XML_CATALOG_FILES=Schemas/catalog.xml ./saxplug SCHEMA.xsd FILE...
 */
#include <libxml/parser.h>
#include <libxml/xmlschemas.h>
#include <libxml/catalog.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void quiet(void *ctx, xmlErrorPtr error) { (void)ctx; (void)error; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: saxplug SCHEMA FILE...\n"); return 2; }
    xmlInitParser();
    xmlSchemaParserCtxtPtr pctxt = xmlSchemaNewParserCtxt(argv[1]);
    xmlSchemaPtr schema = xmlSchemaParse(pctxt);
    xmlSchemaFreeParserCtxt(pctxt);
    if (schema == NULL) { fprintf(stderr, "schema does not compile\n"); return 2; }
    static char buffer[256 * 1024];
    int invalid = 0;
    for (int i = 2; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) { perror(argv[i]); return 3; }
        xmlSAXHandler sax;
        memset(&sax, 0, sizeof sax);
        sax.initialized = XML_SAX2_MAGIC;
        sax.serror = quiet;
        xmlSchemaValidCtxtPtr vctxt = xmlSchemaNewValidCtxt(schema);
        xmlSchemaSetValidStructuredErrors(vctxt, quiet, NULL);
        xmlParserCtxtPtr ctxt = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, argv[i]);
        xmlCtxtUseOptions(ctxt, XML_PARSE_NONET);
        xmlSchemaSAXPlugPtr plug = xmlSchemaSAXPlug(vctxt, &ctxt->sax, &ctxt->userData);
        ctxt->sax->serror = quiet;
        ssize_t n;
        while ((n = read(fd, buffer, sizeof buffer)) > 0) xmlParseChunk(ctxt, buffer, (int)n, 0);
        xmlParseChunk(ctxt, NULL, 0, 1);
        int ok = ctxt->wellFormed && xmlSchemaIsValid(vctxt) == 1;
        xmlSchemaSAXUnplug(plug);
        xmlFreeParserCtxt(ctxt);
        xmlSchemaFreeValidCtxt(vctxt);
        close(fd);
        if (!ok) { invalid++; printf("%s: invalid\n", argv[i]); }
    }
    xmlSchemaFree(schema);
    return invalid ? 1 : 0;
}
