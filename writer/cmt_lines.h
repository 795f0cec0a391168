/*
 * cmt_lines.h: source locations (file, line, column, inlined functions) of code addresses, from the
 * DWARF of the program's modules through elfutils' libdw.
 *
 * In the writer process only: the profiled program never links libdw and never pays for this. Each module's
 * debug information is opened once, on its first address (in the file itself, or a separate debug file by
 * build id under /usr/lib/debug/.build-id or by .gnu_debuglink), and kept until cmt_lines_close. Built
 * without libdw (CMT_HAVE_LIBDW undefined), every lookup finds nothing. Not thread-safe.
 */
#ifndef CMT_LINES_H
#define CMT_LINES_H

#include <stdint.h>

#define CMT_LINES_MAX 16 /* source locations per address: the address's own and its inlined-into callers */

struct cmt_line {
    const char *function; /* NULL when DWARF names none */
    const char *file;     /* absolute (against the compilation directory) when DWARF allows; NULL when
                           * unknown */
    int line, column;     /* 0 when unknown */
};

/* 1 when this build reads DWARF, 0 when it was built without libdw. */
int cmt_lines_available(void);

/* The source locations of addr (already inside the instruction: a return address minus one) in the
 * module at path loaded with bias `bias`, innermost first: out[0] the address's own line in the innermost
 * (perhaps inlined) function, out[1..] the functions it was inlined into, each at the line of the call,
 * outermost last. *state is the module's cache slot (0 at first; the handle lives in *handle). Returns
 * how many were found, 0 when the module has no DWARF or none covers addr. Strings stay valid until
 * the next lookup. */
int cmt_lines_lookup(const char *path, uintptr_t bias, uintptr_t addr, int *state, void **handle,
                     struct cmt_line out[CMT_LINES_MAX]);

/* Releases one module's handle (its strings die with it). */
void cmt_lines_close(int *state, void **handle);

#endif
