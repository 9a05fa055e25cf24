/* Prints the effective uid: setuid-root copies of it show whether exec
 * granted privileges (noNewPrivileges test). */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("euid=%d\n", (int)geteuid());
	return 0;
}
