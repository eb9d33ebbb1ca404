/* A MAP_FIXED mapping over a page that carries a guard-region marker must read.
 *
 * Maps four pages of a file privately, installs a guard marker on the first
 * (MADV_GUARD_INSTALL: reading it then raises SIGSEGV), and maps the same page
 * of the same file again with MAP_FIXED. The new mapping replaces the old one,
 * its marker included, so reading it must give the file's bytes. A kernel that
 * replaces part of a file VMA without zapping with ZAP_FLAG_DROP_MARKER keeps
 * the marker and the read faults.
 *
 * usage: guard-remap [DIR]   (the file is made in DIR, default /tmp)
 * exit: 0 pass, 1 fail, 4 skip (kselftest's codes); one line on stdout says which.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

static sigjmp_buf fault_jmp;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(fault_jmp, 1);
}

/* The first byte at p, or -1 if reading it raises SIGSEGV. */
static int read_byte(volatile const char *p)
{
	if (sigsetjmp(fault_jmp, 1))
		return -1;
	return (unsigned char)*p;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	long page = sysconf(_SC_PAGESIZE);
	char path[4096], *buf, *map, *again;
	struct sigaction sa;
	int fd, i, got;

	snprintf(path, sizeof(path), "%s/guard-remap.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0) {
		printf("FAIL guard-remap: mkstemp in %s: %s\n", dir, strerror(errno));
		return 1;
	}
	unlink(path);
	buf = malloc(4 * page);
	for (i = 0; i < 4; i++)
		memset(buf + i * page, 'a' + i, page);
	if (write(fd, buf, 4 * page) != 4 * page) {
		printf("FAIL guard-remap: writing the file: %s\n", strerror(errno));
		return 1;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigaction(SIGSEGV, &sa, NULL);

	map = mmap(NULL, 4 * page, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		printf("FAIL guard-remap: mmap: %s\n", strerror(errno));
		return 1;
	}
	if (madvise(map, page, MADV_GUARD_INSTALL)) {
		if (errno == EINVAL) {
			printf("SKIP guard-remap: MADV_GUARD_INSTALL refused on a file mapping (EINVAL): no file-backed guard regions in this kernel\n");
			return 4;
		}
		printf("FAIL guard-remap: MADV_GUARD_INSTALL: %s\n", strerror(errno));
		return 1;
	}
	/* The marker is there: without it the check below would prove nothing. */
	if (read_byte(map) != -1) {
		printf("FAIL guard-remap: the guard page read without a fault before the remap\n");
		return 1;
	}
	if (read_byte(map + page) != 'b') {
		printf("FAIL guard-remap: the page after the guard does not read 'b'\n");
		return 1;
	}

	again = mmap(map, page, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (again != map) {
		printf("FAIL guard-remap: MAP_FIXED over the guard page: %s\n", strerror(errno));
		return 1;
	}
	got = read_byte(map);
	if (got == -1) {
		printf("FAIL guard-remap: the page mapped MAP_FIXED over a guard marker faults (the marker survived the remap)\n");
		return 1;
	}
	if (got != 'a' || read_byte(map + page) != 'b') {
		printf("FAIL guard-remap: the remapped page reads %#x, not the file's 'a'\n", got);
		return 1;
	}
	printf("PASS guard-remap: a MAP_FIXED page over a guard marker of the same file reads the file\n");
	return 0;
}
