/*
 * cmt_symbols.h: turning instruction pointers into (module, function, offset), from the ELF symbol
 * tables of the loaded objects (.symtab where present, so static functions are named too; else .dynsym).
 *
 * In the writer process: the program's modules come from /proc/PID/maps (read again when an address falls
 * in none we know), their symbols and build ids from the files. Not thread-safe.
 */
#ifndef CMT_SYMBOLS_H
#define CMT_SYMBOLS_H

#include <stdint.h>

#include "cmt_lines.h"

struct cmt_module {
    char *path;
    char build_id[41]; /* hex, "" if none */
    uintptr_t base;    /* load bias */
    uintptr_t lo, hi;  /* address range of its loaded segments */
    long id;           /* the writer's module_id, 0 until it wrote the row */
    /* symbols, loaded on first use */
    int sym_state;     /* 0 not loaded, 1 loaded, -1 unavailable */
    void *map;
    uint64_t map_len;
    struct cmt_symbol *syms;
    uint64_t nsyms;
    /* DWARF (cmt_lines.c), opened on first use */
    int lines_state;
    void *lines;
};

struct cmt_frame_info {
    struct cmt_module *module; /* NULL if the address is in no loaded object */
    const char *function;      /* NULL if no symbol covers it; valid until cmt_symbols_reset */
    uint64_t symbol_offset;
};

/* The process whose addresses these are; reads its mappings at once. */
void cmt_symbols_set_pid(int pid);

/* Describes ip (a return address: the lookup uses ip - 1, inside the call instruction). */
void cmt_symbols_lookup(uintptr_t ip, struct cmt_frame_info *out);

/* The source locations of ip (a return address, as for cmt_symbols_lookup, which found its module m),
 * innermost first (cmt_lines_lookup); 0 when its module has no DWARF. */
int cmt_symbols_lines(uintptr_t ip, struct cmt_module *m, struct cmt_line out[CMT_LINES_MAX]);

/* Forgets all modules and symbols (after fork, in the child, before a new trace). */
void cmt_symbols_reset(void);

#endif
