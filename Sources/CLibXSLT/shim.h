#ifndef CLIBXSLT_SHIM_H
#define CLIBXSLT_SHIM_H
#include <libxslt/xslt.h>
#include <libxslt/xsltInternals.h>
#include <libxslt/transform.h>
#include <libxslt/security.h>
#include <libxslt/documents.h>
#include <libxslt/xsltutils.h>
#include <libxslt/variables.h>
#endif
