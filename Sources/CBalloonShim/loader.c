// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "CBalloonShim.h"
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

// The dynamic loader reads the executable's relocation table (.rela.dyn)
// once, at start, and nothing reads it again; its pages stay mapped and count
// in the daemon's RSS (about 0.6 MiB for balloond). The table lies in a
// read-only PT_LOAD segment, so dropping its pages from the page tables
// changes no content: a read would fault them back from the file.

struct reloc_range { uintptr_t start, end; int found; };

static int find_main_relocations(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct reloc_range *range = data;
    // The first object is the executable itself.
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return 1;
    uintptr_t rela = 0, relasz = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_RELA) rela = dyn->d_un.d_ptr;
        if (dyn->d_tag == DT_RELASZ) relasz = dyn->d_un.d_val;
    }
    if (!rela || !relasz) return 1;
    // glibc rewrites the executable's dynamic entries to run-time addresses;
    // other loaders may leave the link-time value.
    if (rela < info->dlpi_addr) rela += info->dlpi_addr;
    // Only inside one loadable segment that is not writable.
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (ph->p_type == PT_LOAD && !(ph->p_flags & PF_W) && rela >= lo && rela + relasz <= hi) {
            range->start = rela;
            range->end = rela + relasz;
            range->found = 1;
        }
    }
    return 1;
}

long cballoon_release_relocations(uintptr_t *start, uintptr_t *end) {
    struct reloc_range range = {0, 0, 0};
    dl_iterate_phdr(find_main_relocations, &range);
    long page = sysconf(_SC_PAGESIZE);
    if (!range.found || page <= 0) return 0;
    // Whole pages only: the first and last may hold other sections.
    uintptr_t lo = (range.start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t hi = range.end & ~((uintptr_t)page - 1);
    if (hi <= lo) return 0;
    if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) return -1;
    *start = lo;
    *end = hi;
    return (long)(hi - lo);
}
