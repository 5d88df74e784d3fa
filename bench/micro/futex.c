/* futex rt N : two threads hand a token back and forth N times through one
 * futex word (FUTEX_WAIT/FUTEX_WAKE, private) -> round trips per second.
 * Prints the shared kit's result line: futex_rt N rt VALUE rt/s */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static _Atomic int turn; /* 0: main's turn, 1: the partner's */
static long rounds;

static void futex_wait(int expect)
{
	syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake(void)
{
	syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *partner(void *arg)
{
	(void)arg;
	for (long i = 0; i < rounds; i++) {
		while (atomic_load(&turn) != 1)
			futex_wait(0);
		atomic_store(&turn, 0);
		futex_wake();
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc < 3 || strcmp(argv[1], "rt") || (rounds = atol(argv[2])) <= 0) {
		fprintf(stderr, "usage: futex rt N\n");
		return 2;
	}
	pthread_t th;
	if (pthread_create(&th, NULL, partner, NULL)) {
		perror("pthread_create");
		return 1;
	}
	double t0 = now_s();
	for (long i = 0; i < rounds; i++) {
		atomic_store(&turn, 1);
		futex_wake();
		while (atomic_load(&turn) != 0)
			futex_wait(1);
	}
	double t = now_s() - t0;
	pthread_join(th, NULL);
	printf("futex_rt %ld rt %.1f rt/s\n", rounds, rounds / t);
	return 0;
}
