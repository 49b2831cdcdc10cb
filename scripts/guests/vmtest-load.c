/* The guest kit's load generator, built with gcc -static into the guest's initramfs.
 *   vmtest-load burn P        keep one CPU P% busy (duty cycle over 100 ms periods), forever
 *   vmtest-load hog M [D]     wait D seconds (default 0), then allocate and touch M MiB and hold it, forever
 * It prints one "VMTEST ..." line when the load is in place, so a test can read the moment from the serial log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int burn(int percent) {
    const double period = 0.1;
    if (percent < 0) percent = 0;
    if (percent > 100) percent = 100;
    printf("VMTEST burn started percent=%d\n", percent);
    fflush(stdout);
    volatile unsigned long sink = 0;
    for (;;) {
        double start = now();
        double busy = period * percent / 100.0;
        while (now() - start < busy) {
            for (int i = 0; i < 1000; i++) sink += i;
        }
        double rest = period - (now() - start);
        if (rest > 0) {
            struct timespec ts = { 0, (long)(rest * 1e9) };
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

static int hog(long mib, int delay) {
    if (delay > 0) {
        printf("VMTEST hog waiting seconds=%d\n", delay);
        fflush(stdout);
        sleep(delay);
    }
    printf("VMTEST hog allocating mib=%ld\n", mib);
    fflush(stdout);
    size_t size = (size_t)mib << 20;
    char *block = malloc(size);
    if (!block) {
        printf("VMTEST hog failed mib=%ld\n", mib);
        fflush(stdout);
        return 1;
    }
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < size; off += page) block[off] = (char)(off / page + 1);
    printf("VMTEST hog holding mib=%ld\n", mib);
    fflush(stdout);
    for (;;) {
        pause();
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "burn") == 0) return burn(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "hog") == 0) return hog(atol(argv[2]), argc >= 4 ? atoi(argv[3]) : 0);
    fprintf(stderr, "usage: vmtest-load burn PERCENT | hog MIB [DELAY]\n");
    return 2;
}
