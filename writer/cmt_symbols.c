/*
 * cmt_symbols.c: module map and ELF symbol tables (see cmt_symbols.h).
 *
 * In the writer process. Files are mmap'ed read-only and kept mapped while their names are in use; only
 * the pages of the headers and symbol tables are ever touched.
 */
#include "cmt_symbols.h"

#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
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

/* ---- the module map, from /proc/PID/maps ---------------------------------------------------------- */

static int target_pid;

static void refresh_modules(void);

void cmt_symbols_set_pid(int pid)
{
    target_pid = pid;
    refresh_modules(); /* now, while the program surely lives: it may be gone by the time we write */
}

/* The load bias and build id of an ELF file mapped at `start` (its mapping of file offset `offset`), from
 * the file's own headers: the segment containing that offset tells where the file's address 0 is. */
static int elf_facts(const char *path, uintptr_t start, uint64_t offset, uintptr_t *bias, char build_id[41])
{
    build_id[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    Elf64_Ehdr eh;
    int rc = -1;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        eh.e_phnum > 256)
        goto out;
    Elf64_Phdr ph[256];
    if (pread(fd, ph, eh.e_phnum * sizeof *ph, (off_t)eh.e_phoff) != (ssize_t)(eh.e_phnum * sizeof *ph))
        goto out;
    long page = sysconf(_SC_PAGESIZE);
    int found = 0;
    for (int i = 0; i < eh.e_phnum && !found; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        uint64_t off = ph[i].p_offset & ~(uint64_t)(page - 1);
        if (off == offset) {
            *bias = start - (uintptr_t)(ph[i].p_vaddr & ~(uint64_t)(page - 1));
            found = 1;
        }
    }
    if (!found)
        goto out;
    for (int i = 0; i < eh.e_phnum; i++) {
        if (ph[i].p_type != PT_NOTE || ph[i].p_filesz > 65536)
            continue;
        unsigned char buf[65536];
        ssize_t n = pread(fd, buf, ph[i].p_filesz, (off_t)ph[i].p_offset);
        const unsigned char *p = buf, *end = buf + (n > 0 ? n : 0);
        while (p + sizeof(Elf64_Nhdr) <= end) {
            const Elf64_Nhdr *nh = (const Elf64_Nhdr *)p;
            const unsigned char *name = p + sizeof *nh, *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + nh->n_descsz > end || desc < name)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
                size_t len = nh->n_descsz > 20 ? 20 : nh->n_descsz;
                for (size_t k = 0; k < len; k++) {
                    static const char hex[] = "0123456789abcdef";
                    build_id[2 * k] = hex[desc[k] >> 4];
                    build_id[2 * k + 1] = hex[desc[k] & 15];
                }
                build_id[2 * len] = 0;
                break;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
        if (build_id[0])
            break;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

static struct cmt_module *known(const char *path, uintptr_t lo)
{
    for (size_t i = 0; i < nmodules; i++)
        if (modules[i].lo == lo && !strcmp(modules[i].path, path))
            return &modules[i];
    return NULL;
}

static void add_module(const char *path, uintptr_t start, uintptr_t end, uint64_t offset)
{
    struct cmt_module *m = known(path, start);
    if (m)
        return;
    /* A later mapping of a file we know (its next segment): widen that module. */
    for (size_t i = nmodules; i-- > 0;)
        if (modules[i].hi == start && !strcmp(modules[i].path, path)) {
            modules[i].hi = end;
            return;
        }
    if (offset != 0)
        return; /* a data mapping of some file at an offset: not an object's first segment */
    uintptr_t bias;
    char bid[41];
    if (elf_facts(path, start, offset, &bias, bid) != 0)
        return;
    if (nmodules == cap_modules) {
        size_t ncap = cap_modules ? cap_modules * 2 : 64;
        struct cmt_module *g = realloc(modules, ncap * sizeof *g);
        if (!g)
            return;
        modules = g;
        cap_modules = ncap;
    }
    m = &modules[nmodules];
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path)
        return;
    m->base = bias;
    m->lo = start;
    m->hi = end;
    memcpy(m->build_id, bid, sizeof bid);
    nmodules++;
}

/* Reads the program's mappings: every file mapped from offset 0 that is an ELF object starts a module,
 * the mappings of the same file that follow it extend it. */
static void refresh_modules(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", target_pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[PATH_MAX + 256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long lo, hi, off, inode;
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %*s %llx %*s %llu %n", &lo, &hi, &off, &inode, &name_at) < 4 || !inode ||
            !name_at)
            continue;
        char *name = line + name_at;
        name[strcspn(name, "\n")] = 0;
        if (name[0] != '/' || !strncmp(name, "/memfd:", 7))
            continue;
        size_t len = strlen(name);
        if (len > 10 && !strcmp(name + len - 10, " (deleted)"))
            continue;
        add_module(name, (uintptr_t)lo, (uintptr_t)hi, off);
    }
    fclose(f);
}

static struct cmt_module *find_module(uintptr_t addr)
{
    for (size_t i = nmodules; i-- > 0;) /* the newest first: an address reused after dlclose */
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
        refresh_modules(); /* a library loaded since we last looked */
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

int cmt_symbols_lines(uintptr_t ip, struct cmt_module *m, struct cmt_line out[CMT_LINES_MAX])
{
    if (!m || !ip)
        return 0;
    return cmt_lines_lookup(m->path, m->base, ip - 1, &m->lines_state, &m->lines, out);
}

void cmt_symbols_reset(void)
{
    for (size_t i = 0; i < nmodules; i++) {
        cmt_lines_close(&modules[i].lines_state, &modules[i].lines);
        free(modules[i].path);
        free(modules[i].syms);
        if (modules[i].map)
            munmap(modules[i].map, modules[i].map_len);
    }
    free(modules);
    modules = NULL;
    nmodules = cap_modules = 0;
}
