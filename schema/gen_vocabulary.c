/*
 * gen_vocabulary.c: prints the lookup tables of schema/cmt_events.h (ops, kinds, apis) as SQL INSERTs,
 * at build time, into build/schema/cmt_vocabulary.sql: what every trace's apis/ops/kinds tables hold,
 * for writers outside C (tests/tracebuilder.py) so that no one parses the header or restates a number.
 * Python and SQL that read a trace look names up in the trace's own tables instead.
 */
#include "cmt_events.h"

#include <stdio.h>

int main(void)
{
    printf("-- Generated from schema/cmt_events.h by schema/gen_vocabulary.c: do not edit.\n");
#define X(id, name, str) printf("INSERT INTO ops VALUES (%d, '%s');\n", id, str);
    CMT_OP_LIST(X)
#undef X
#define X(id, name, str) printf("INSERT INTO kinds VALUES (%d, '%s');\n", id, str);
    CMT_KIND_LIST(X)
#undef X
#define X(id, name, base, op, kind) \
    printf("INSERT INTO apis VALUES (%d, '%s', '%s', %d, %d);\n", id, #name, #base, CMT_OP_##op, CMT_KIND_##kind);
    CMT_API_LIST(X)
#undef X
    return 0;
}
