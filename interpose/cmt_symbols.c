/*
 * cmt_symbols.c: module map and ELF symbol tables (see cmt_symbols.h).
 *
 * Writer thread only. Files are mmap'ed read-only and kept mapped while their names are in use; only
 * the pages of the headers and symbol tables are ever touched.
 */
#include "cmt_symbols.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct cmt_symbol {
    uint64_t value, size;
    const char *name;
};

static struct cmt_module *modules;
static size_t nmodules, cap_modules;

/* ---- the module map ------------------------------------------------------------------------------- */

static void read_build_id(struct dl_phdr_info *info, char out[41])
{
    out[0] = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            const unsigned char *name = p + sizeof *n, *desc = name + ((n->n_namesz + 3) & ~3u);
            if (desc + n->n_descsz > end)
                break;
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
                size_t len = n->n_descsz > 20 ? 20 : n->n_descsz;
                for (size_t k = 0; k < len; k++) {
                    static const char hex[] = "0123456789abcdef";
                    out[2 * k] = hex[desc[k] >> 4];
                    out[2 * k + 1] = hex[desc[k] & 15];
                }
                out[2 * len] = 0;
                return;
            }
            p = desc + ((n->n_descsz + 3) & ~3u);
        }
    }
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t a = info->dlpi_addr + ph->p_vaddr;
        if (a < lo)
            lo = a;
        if (a + ph->p_memsz > hi)
            hi = a + ph->p_memsz;
    }
    if (hi <= lo)
        return 0;
    for (size_t i = 0; i < nmodules; i++)
        if (modules[i].lo == lo && modules[i].hi == hi)
            return 0; /* already known */
    if (nmodules == cap_modules) {
        size_t ncap = cap_modules ? cap_modules * 2 : 64;
        struct cmt_module *m = realloc(modules, ncap * sizeof *m);
        if (!m)
            return 1;
        modules = m;
        cap_modules = ncap;
    }
    struct cmt_module *m = &modules[nmodules];
    memset(m, 0, sizeof *m);
    const char *name = info->dlpi_name;
    char exe[4096];
    if (!name || !*name) { /* the main program */
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
        name = exe;
    }
    m->path = strdup(name);
    if (!m->path)
        return 1;
    m->base = info->dlpi_addr;
    m->lo = lo;
    m->hi = hi;
    read_build_id(info, m->build_id);
    nmodules++;
    return 0;
}

static struct cmt_module *find_module(uintptr_t addr)
{
    for (size_t i = 0; i < nmodules; i++)
        if (addr >= modules[i].lo && addr < modules[i].hi)
            return &modules[i];
    return NULL;
}

/* ---- symbol tables ------------------------------------------------------------------------------- */

static int by_value(const void *a, const void *b)
{
    const struct cmt_symbol *x = a, *y = b;
    return x->value < y->value ? -1 : x->value > y->value;
}

/* Reads the FUNC symbols of one symbol table section into m->syms. The checks keep a damaged or
 * unusual file from taking us out of bounds. */
static int load_table(struct cmt_module *m, const unsigned char *base, uint64_t len, const Elf64_Shdr *sh,
                      const Elf64_Shdr *strsh)
{
    if (sh->sh_offset > len || sh->sh_size > len - sh->sh_offset || strsh->sh_offset > len ||
        strsh->sh_size > len - strsh->sh_offset || sh->sh_entsize != sizeof(Elf64_Sym))
        return -1;
    const char *strend = (const char *)(base + strsh->sh_offset + strsh->sh_size);
    if (!strsh->sh_size || strend[-1] != 0)
        return -1; /* a string table must end in NUL, or a name could run past it */
    const Elf64_Sym *s = (const Elf64_Sym *)(base + sh->sh_offset);
    uint64_t n = sh->sh_size / sizeof *s;
    const char *strtab = (const char *)(base + strsh->sh_offset);
    struct cmt_symbol *out = malloc((n ? n : 1) * sizeof *out);
    if (!out)
        return -1;
    uint64_t k = 0;
    for (uint64_t i = 0; i < n; i++) {
        int type = ELF64_ST_TYPE(s[i].st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s[i].st_shndx == SHN_UNDEF || !s[i].st_value ||
            s[i].st_name >= strsh->sh_size)
            continue;
        out[k].value = s[i].st_value;
        out[k].size = s[i].st_size;
        out[k].name = strtab + s[i].st_name;
        k++;
    }
    qsort(out, k, sizeof *out, by_value);
    m->syms = out;
    m->nsyms = k;
    return 0;
}

static void load_symbols(struct cmt_module *m)
{
    m->sym_state = -1;
    int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < sizeof(Elf64_Ehdr)) {
        close(fd);
        return;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return;
    m->map = map;
    m->map_len = (uint64_t)st.st_size;
    const unsigned char *b = map;
    const Elf64_Ehdr *eh = map;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff > m->map_len ||
        (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > m->map_len - eh->e_shoff)
        return;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(b + eh->e_shoff);
    const Elf64_Shdr *symtab = NULL, *dynsym = NULL;
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type == SHT_SYMTAB && sh[i].sh_link < eh->e_shnum)
            symtab = &sh[i];
        else if (sh[i].sh_type == SHT_DYNSYM && sh[i].sh_link < eh->e_shnum)
            dynsym = &sh[i];
    }
    /* .symtab names static functions too; stripped files keep only .dynsym. */
    const Elf64_Shdr *use = symtab ? symtab : dynsym;
    if (use && load_table(m, b, m->map_len, use, &sh[use->sh_link]) == 0)
        m->sym_state = 1;
}

void cmt_symbols_lookup(uintptr_t ip, struct cmt_frame_info *out)
{
    memset(out, 0, sizeof *out);
    uintptr_t addr = ip ? ip - 1 : ip;
    struct cmt_module *m = find_module(addr);
    if (!m) {
        dl_iterate_phdr(add_module, NULL); /* a library loaded since we last looked */
        m = find_module(addr);
    }
    if (!m)
        return;
    out->module = m;
    if (m->sym_state == 0)
        load_symbols(m);
    if (m->sym_state != 1 || !m->nsyms)
        return;
    uint64_t rel = addr - m->base;
    uint64_t lo = 0, hi = m->nsyms;
    while (lo < hi) { /* last symbol with value <= rel */
        uint64_t mid = (lo + hi) / 2;
        if (m->syms[mid].value <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo)
        return;
    const struct cmt_symbol *s = &m->syms[lo - 1];
    /* Sized symbols must contain the address; unsized ones (hand-written assembly) are trusted up to the
     * next symbol. */
    if (s->size && rel >= s->value + s->size)
        return;
    out->function = s->name;
    out->symbol_offset = ip - (m->base + s->value);
}

void cmt_symbols_reset(void)
{
    for (size_t i = 0; i < nmodules; i++) {
        free(modules[i].path);
        free(modules[i].syms);
        if (modules[i].map)
            munmap(modules[i].map, modules[i].map_len);
    }
    free(modules);
    modules = NULL;
    nmodules = cap_modules = 0;
}
