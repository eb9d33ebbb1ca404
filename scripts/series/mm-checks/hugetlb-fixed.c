/* A hugetlb MAP_FIXED over a read-faulted, 2 MiB-aligned range of a private file
 * mapping must be written to without a kernel oops.
 *
 * Maps a regular file privately, read-faults every page of a 2 MiB-aligned range
 * inside it (so that a PTE table backs the range), then maps a hugetlb memfd
 * (memfd_create(MFD_HUGETLB)) over that range with MAP_FIXED and writes to it. The
 * replaced range's page tables must be gone: a kernel that keeps them leaves a PMD
 * pointing at a PTE table, and the first hugetlb fault there hits the BUG in
 * huge_pte_alloc(). Needs one free 2 MiB huge page (vm.nr_hugepages); no privilege.
 *
 * usage: hugetlb-fixed [DIR]   (the regular file is made in DIR, default /tmp)
 * exit: 0 pass, 1 fail, 4 skip (kselftest's codes); one line on stdout says which.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

#define HPAGE (2UL << 20)

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	long page = sysconf(_SC_PAGESIZE);
	size_t len = 2 * HPAGE;
	char path[4096], *map, *aligned, *huge;
	volatile char sum = 0;
	size_t off;
	int fd, hfd;

	hfd = memfd_create("hugetlb-fixed", MFD_HUGETLB);
	if (hfd < 0) {
		printf("SKIP hugetlb-fixed: memfd_create(MFD_HUGETLB): %s (no hugetlbfs)\n", strerror(errno));
		return 4;
	}
	if (ftruncate(hfd, HPAGE)) {
		printf("FAIL hugetlb-fixed: ftruncate of the hugetlb memfd: %s\n", strerror(errno));
		return 1;
	}
	/* A huge page must be had before the check: otherwise the MAP_FIXED below fails
	 * (no reservation) after it has unmapped the range, which proves nothing. */
	huge = mmap(NULL, HPAGE, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
	if (huge == MAP_FAILED) {
		printf("SKIP hugetlb-fixed: no free 2 MiB huge page (mmap: %s; set vm.nr_hugepages)\n",
		       strerror(errno));
		return 4;
	}
	munmap(huge, HPAGE);

	snprintf(path, sizeof(path), "%s/hugetlb-fixed.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0) {
		printf("FAIL hugetlb-fixed: mkstemp in %s: %s\n", dir, strerror(errno));
		return 1;
	}
	unlink(path);
	if (ftruncate(fd, len)) {
		printf("FAIL hugetlb-fixed: ftruncate: %s\n", strerror(errno));
		return 1;
	}
	map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		printf("FAIL hugetlb-fixed: mmap of the file: %s\n", strerror(errno));
		return 1;
	}
	/* The 2 MiB-aligned range inside the 4 MiB mapping, read-faulted page by page into a
	 * PTE table: no transparent huge page there (tmpfs may have them), which a PMD would map. */
	madvise(map, len, MADV_NOHUGEPAGE);
	aligned = (char *)(((uintptr_t)map + HPAGE - 1) & ~(HPAGE - 1));
	for (off = 0; off < HPAGE; off += page)
		sum += aligned[off];

	huge = mmap(aligned, HPAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, hfd, 0);
	if (huge != aligned) {
		printf("FAIL hugetlb-fixed: hugetlb MAP_FIXED over the faulted range: %s\n", strerror(errno));
		return 1;
	}
	/* The first write faults the huge page in: the oops, on a kernel that kept the PTE table. */
	memset(huge, 0x5a, HPAGE);
	for (off = 0; off < HPAGE; off += page)
		if (huge[off] != 0x5a) {
			printf("FAIL hugetlb-fixed: the hugetlb mapping reads %#x at +%#zx\n", huge[off], off);
			return 1;
		}
	printf("PASS hugetlb-fixed: a hugetlb MAP_FIXED over a read-faulted file range was written and read back\n");
	return 0;
}
