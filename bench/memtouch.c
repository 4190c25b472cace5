/* memtouch: benchmark workload for cryo (see bench/README.md).
 *
 *   memtouch CTL_DIR MIB [huge|collapse]
 *
 * Maps MIB MiB of private anonymous memory (MIB may be 0: the "trivial"
 * process; with "huge", 2 MiB-aligned and MADV_HUGEPAGE, with "collapse",
 * 2 MiB-aligned and MADV_COLLAPSE once written: transparent huge pages where
 * the system allows; with "shared", shared anonymous memory; with
 * "hugetlb-shared", shared anonymous memory of 2 MiB hugetlb pages, MAP_SHARED |
 * MAP_HUGETLB, from the pool of /proc/sys/vm/nr_hugepages; "hugetlbfs-file", a
 * file of the hugetlbfs mount $MEMTOUCH_HUGETLBFS mapped shared;
 * "hugetlb-private", private anonymous MAP_HUGETLB memory;
 * "hugetlb-private-memfd", a hugetlb memfd mapped private), writes a non-zero,
 * page-dependent pattern to every page, then
 * writes CTL_DIR/ready (its pid; ready.tmp + rename, so readers never see a
 * partial file) and sleeps in a loop (nanosleep 100 ms).
 *
 * Between sleeps it looks for CTL_DIR/verify.  When present the file is
 * removed, every page is checked against the pattern and CTL_DIR/result is
 * written atomically: "OK <n> pages" or "FAIL <first bad page, expected,
 * actual>".  If `verify` contained "exit" the process then exits 0 (OK) or 1
 * (FAIL); otherwise it keeps sleeping.  The check runs after a restore so a
 * benchmark can confirm that what it timed really brought the memory back.
 *
 * stdin/stdout/stderr should be /dev/null or regular files: cryo does not
 * checkpoint pipes, sockets or terminals.  Only stderr is written, and only
 * on a setup failure (exit status 2).
 */
#define _GNU_SOURCE
#include "membench.h"

int main(int argc, char **argv)
{
    g_prog = "memtouch";
    const int huge = argc == 4 ? (strcmp(argv[3], "huge") == 0          ? 1
                                  : strcmp(argv[3], "collapse") == 0    ? 2
                                  : strcmp(argv[3], "shared") == 0      ? 3
                                  : strcmp(argv[3], "hugetlb-shared") == 0 ? 4
                                  : strcmp(argv[3], "hugetlbfs-file") == 0 ? 5
                                  : strcmp(argv[3], "hugetlb-private") == 0 ? 6
                                  : strcmp(argv[3], "hugetlb-private-memfd") == 0 ? 7
                                                                         : -1)
                               : 0;
    if (argc < 3 || argc > 4 || huge < 0) {
        fprintf(stderr, "usage: %s CTL_DIR MIB [huge|collapse|shared|hugetlb-shared|hugetlbfs-file|hugetlb-private|hugetlb-private-memfd]   (MIB >= 0; 0 = trivial process)\n",
                argv[0]);
        return 2;
    }
    g_ctl = argv[1];
    uint64_t pages;
    uint64_t *mem = map_and_fill_huge(parse_mib(argv[2]), &pages, huge);

    char buf[64];
    snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (write_ctl("ready", buf) != 0)
        die("write ready");

    for (;;) {
        int do_exit = wait_verify();
        char msg[256];
        int ok = check_pages(mem, pages, msg, sizeof msg);
        if (write_ctl("result", msg) != 0)
            die("write result");
        if (do_exit)
            return ok ? 0 : 1;
    }
}
