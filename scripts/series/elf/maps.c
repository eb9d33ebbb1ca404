/* Prints its own /proc/self/maps: the layout exec (and ld.so) gave it. Built by
 * `cargo xtask patches-check` as a PIE, a non-PIE, a static and a static-pie program and with
 * 64K and 2M p_align (scripts/series/exec-layout-guest.sh runs each on the base and patched kernels). */
#include <fcntl.h>
#include <unistd.h>

int main(void)
{
	char buf[8192];
	ssize_t n;
	int fd = open("/proc/self/maps", O_RDONLY);

	if (fd < 0)
		return 1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(1, buf, n) != n)
			return 1;
	return n < 0;
}
