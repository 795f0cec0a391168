/*
 * cmt_lines.c: DWARF source locations through libdwfl (see cmt_lines.h).
 *
 * One Dwfl per module, reporting the file at address 0, so lookups take file addresses (addr - bias):
 * the module is opened once and its line tables and DIEs are read by libdw on demand. The inline chain is
 * eu-addr2line -i's: dwarf_getscopes finds the innermost function at the address, dwarf_getscopes_die
 * its physical nesting, innermost first; each
 * DW_TAG_inlined_subroutine's DW_AT_call_file/DW_AT_call_line is the location in the next enclosing
 * function. Never fetches anything over the network (debuginfod is left off).
 */
#include "cmt_lines.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CMT_HAVE_LIBDW

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

static char *debuginfo_path; /* NULL: libdwfl's default ":.debug:/usr/lib/debug" */

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

int cmt_lines_available(void)
{
    return 1;
}

/* Opens the module's DWARF; 1 when it has some, -1 when not (remembered: never tried again). */
static int open_module(const char *path, int *state, void **handle)
{
    *state = -1;
    static int env_done;
    if (!env_done) {
        unsetenv("DEBUGINFOD_URLS"); /* no network fetches from inside someone's training run */
        env_done = 1;
    }
    Dwfl *dwfl = dwfl_begin(&callbacks);
    if (!dwfl)
        return -1;
    dwfl_report_begin(dwfl);
    Dwfl_Module *mod = dwfl_report_elf(dwfl, path, path, -1, 0, false);
    dwfl_report_end(dwfl, NULL, NULL);
    Dwarf_Addr bias;
    if (!mod || !dwfl_module_getdwarf(mod, &bias)) {
        dwfl_end(dwfl);
        return -1;
    }
    *handle = dwfl;
    *state = 1;
    return 1;
}

/* The file name made absolute against the CU's compilation directory (names in line tables are often
 * relative to it), "." and ".." folded; into slot k of a static buffer (valid until the next lookup). */
static const char *absolute(const char *name, const char *comp_dir, int k)
{
    static char buf[CMT_LINES_MAX][PATH_MAX];
    if (!name || name[0] == '/' || !comp_dir || comp_dir[0] != '/')
        return name;
    char *b = buf[k];
    int len = snprintf(b, PATH_MAX, "%s/%s", comp_dir, name);
    if (len < 0 || len >= PATH_MAX)
        return name;
    /* Lexical folding, component by component, into the same buffer (the output never outruns the input). */
    char *w = b; /* end of the output so far */
    const char *r = b;
    while (*r) {
        while (*r == '/')
            r++;
        const char *e = strchrnul(r, '/');
        size_t cl = (size_t)(e - r);
        if (cl == 0)
            break;
        if (cl == 1 && r[0] == '.') {
        } else if (cl == 2 && r[0] == '.' && r[1] == '.') {
            while (w > b && *--w != '/')
                ;
        } else {
            *w++ = '/';
            memmove(w, r, cl);
            w += cl;
        }
        r = e;
    }
    if (w == b)
        *w++ = '/';
    *w = 0;
    return b;
}

static const char *die_function_name(Dwarf_Die *die)
{
    Dwarf_Attribute a;
    const char *name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &a));
    if (!name)
        name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a));
    return name ? name : dwarf_diename(die);
}

static int is_function(Dwarf_Die *die)
{
    int tag = dwarf_tag(die);
    return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine || tag == DW_TAG_entry_point;
}

int cmt_lines_lookup(const char *path, uintptr_t bias, uintptr_t addr, int *state, void **handle,
                     struct cmt_line out[CMT_LINES_MAX])
{
    if (*state == 0)
        open_module(path, state, handle);
    if (*state != 1)
        return 0;
    Dwfl *dwfl = *handle;
    Dwarf_Addr file_addr = (Dwarf_Addr)(addr - bias);
    Dwfl_Module *mod = dwfl_addrmodule(dwfl, file_addr);
    if (!mod)
        return 0;
    int n = 0;
    Dwfl_Line *ln = dwfl_module_getsrc(mod, file_addr);
    if (!ln)
        return 0;
    int lineno = 0, col = 0;
    const char *file = dwfl_lineinfo(ln, NULL, &lineno, &col, NULL, NULL);
    out[0] = (struct cmt_line){NULL, absolute(file, dwfl_line_comp_dir(ln), 0), lineno, col};
    n = 1;
    Dwarf_Addr dbias;
    Dwarf_Die *cudie = dwfl_module_addrdie(mod, file_addr, &dbias);
    if (!cudie)
        return n;
    Dwarf_Die *scopes = NULL;
    int nscopes = dwarf_getscopes(cudie, file_addr - dbias, &scopes);
    if (nscopes <= 0) {
        free(scopes);
        return n;
    }
    Dwarf_Attribute cda;
    const char *comp_dir = dwarf_formstring(dwarf_attr(cudie, DW_AT_comp_dir, &cda));
    Dwarf_Files *files = NULL;
    if (dwarf_getsrcfiles(cudie, &files, NULL) != 0)
        files = NULL;
    int i = 0;
    while (i < nscopes && !is_function(&scopes[i]))
        i++;
    if (i == nscopes) {
        free(scopes);
        return n;
    }
    out[0].function = die_function_name(&scopes[i]);
    if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine) { /* not inlined: the one location */
        free(scopes);
        return n;
    }
    /* dwarf_getscopes continues an inlined scope with its abstract origin's parents; the physical nesting
     * (the functions it was inlined into) comes from dwarf_getscopes_die on the innermost function. */
    Dwarf_Die fn = scopes[i];
    free(scopes);
    scopes = NULL;
    nscopes = dwarf_getscopes_die(&fn, &scopes);
    i = 0;
    /* Each inlined scope's call site is a location in the next function out. */
    while (i < nscopes && dwarf_tag(&scopes[i]) == DW_TAG_inlined_subroutine && n < CMT_LINES_MAX) {
        Dwarf_Die *inl = &scopes[i];
        int j = i + 1;
        while (j < nscopes && !is_function(&scopes[j]))
            j++;
        Dwarf_Attribute a;
        Dwarf_Word v;
        struct cmt_line *o = &out[n];
        *o = (struct cmt_line){NULL, NULL, 0, 0};
        if (files && dwarf_formudata(dwarf_attr(inl, DW_AT_call_file, &a), &v) == 0)
            o->file = absolute(dwarf_filesrc(files, v, NULL, NULL), comp_dir, n);
        if (dwarf_formudata(dwarf_attr(inl, DW_AT_call_line, &a), &v) == 0)
            o->line = (int)v;
        if (dwarf_formudata(dwarf_attr(inl, DW_AT_call_column, &a), &v) == 0)
            o->column = (int)v;
        if (j < nscopes)
            o->function = die_function_name(&scopes[j]);
        n++;
        i = j;
    }
    if (nscopes > 0)
        free(scopes);
    return n;
}

void cmt_lines_close(int *state, void **handle)
{
    if (*state == 1 && *handle)
        dwfl_end(*handle);
    *handle = NULL;
    *state = 0;
}

#else /* built without libdw */

int cmt_lines_available(void)
{
    return 0;
}

int cmt_lines_lookup(const char *path, uintptr_t bias, uintptr_t addr, int *state, void **handle,
                     struct cmt_line out[CMT_LINES_MAX])
{
    (void)path, (void)bias, (void)addr, (void)state, (void)handle, (void)out;
    return 0;
}

void cmt_lines_close(int *state, void **handle)
{
    *state = 0;
    *handle = NULL;
}

#endif
