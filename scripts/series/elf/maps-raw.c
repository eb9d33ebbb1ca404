/* /proc/self/maps printed with raw system calls, no libc: built -m32 (IA32 emulation: int
 * $0x80) as a static ET_EXEC and a static PIE, and 64-bit as PIEs without an interpreter whose
 * first PT_LOAD is linked below mmap_min_addr (scripts/series/exec-layout-guest.sh). */
#ifdef __x86_64__
static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}
#define NR_READ 0
#define NR_WRITE 1
#define NR_OPEN 2
#define NR_EXIT 60
#else
static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}
#define NR_READ 3
#define NR_WRITE 4
#define NR_OPEN 5
#define NR_EXIT 1
#endif

static char buf[4096];

void __attribute__((noreturn, used)) start_c(void)
{
	long fd = sys3(NR_OPEN, (long)"/proc/self/maps", 0, 0), n, rc = 1;

	if (fd >= 0) {
		while ((n = sys3(NR_READ, fd, (long)buf, sizeof(buf))) > 0)
			sys3(NR_WRITE, 1, (long)buf, n);
		rc = n < 0;
	}
	for (;;)
		sys3(NR_EXIT, rc, 0, 0);
}

/* The kernel enters with the stack pointer at argc; align it as a call expects. */
#ifdef __x86_64__
__asm__(".globl _start\n_start:\n\tandq $-16, %rsp\n\tcall start_c\n");
#else
__asm__(".globl _start\n_start:\n\tandl $-16, %esp\n\tcall start_c\n");
#endif
