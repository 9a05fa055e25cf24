/* sysprobe NR [ARG...]: makes one raw syscall and prints "ok" or the errno
 * number ("errno N"), for the seccomp tests (busybox cannot reach most
 * syscalls). Arguments are decimal or 0x-hex. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long a[6] = {0};
	if (argc < 2)
		return 2;
	for (int i = 2; i < argc && i < 8; i++)
		a[i - 2] = strtol(argv[i], NULL, 0);
	errno = 0;
	long r = syscall(strtol(argv[1], NULL, 0), a[0], a[1], a[2], a[3], a[4], a[5]);
	if (r < 0)
		printf("errno %d\n", errno);
	else
		printf("ok\n");
	return 0;
}
