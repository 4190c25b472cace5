/* A tree that owns its IPC and UTS namespaces (tests/e2e/test_ipcns.py).
 *
 * argv: CTL [MODE]. Without MODE the workload enters fresh IPC and UTS
 * namespaces itself (unshare(2)); with "external", it is already in the ones
 * `unshare --fork --ipc --uts` made. Then it sets:
 *   - the host and domain name;
 *   - IPC sysctls (kernel.msgmnb, kernel.sem, fs.mqueue.msg_max);
 *   - a SysV semaphore set (key, mode, values set by SETALL, id not the first
 *     one) on which a child waits (semop -1 on a semaphore at 0);
 *   - a SysV message queue (key, mode, qbytes) holding messages of several
 *     types;
 *   - a SysV shared memory segment with a pattern;
 *   - a POSIX message queue held open (O_NONBLOCK) with messages of several
 *     priorities, and another one with a message nobody holds open.
 * On verify it checks all of it, reading the queues without taking messages
 * (SysV: msgrcv MSG_COPY; POSIX: taken and sent back). On "exit" it also
 * takes one message by type, releases the waiter and checks its exit status.
 *
 * Other modes (in its own namespaces, for refusals): "semop" (semops with
 * SEM_UNDO), "split" (a child in another IPC namespace), "notify" (mq_notify
 * on the held queue), "loose-shm" (a segment nobody attaches). "host": no
 * namespace; it holds a POSIX queue of the host's IPC namespace open
 * (/cryo-e2e-host-PID, two messages nobody takes) and checks its fd;
 * "host-unlink": the same queue unlinked while held.
 */
#define _GNU_SOURCE
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "wl_common.h"

#define HOST "cryo-ipcns-host"
#define DOMAIN "cryo-ipcns.example"
#define SEM_KEY 0x5e11
#define MSG_KEY 0x3e55
#define SHM_KEY 0x54a1
#define SHM_SIZE (3 * 4096)
#define MQ_HELD "/cryo-wl-held"
#define MQ_ALONE "/cryo-wl-alone"

static const unsigned short sem_values[3] = {5, 0, 7};
static const struct { long type; const char *text; } msgs[] = {
    {1, "alpha"}, {7, "beta-seven"}, {3, "gamma"}, {1, "delta"},
};
#define NMSGS (sizeof msgs / sizeof msgs[0])
static const struct { unsigned prio; const char *text; } mq_sent[] = {
    {1, "low"}, {9, "high"}, {5, "mid"}, {1, "low-2"},
};
/* mq_receive order: highest priority first, oldest first within one. */
static const int mq_order[] = {1, 2, 0, 3};
#define NMQ 4

static const struct { const char *path, *value; } sysctls[] = {
    {"/proc/sys/kernel/msgmnb", "20000"},
    {"/proc/sys/kernel/sem", "251\t32001\t33\t129"},
    {"/proc/sys/fs/mqueue/msg_max", "12"},
};

static int semid, msqid, shmid;
static unsigned char *shm;
static mqd_t mq;
static pid_t waiter;

static void write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || wl_write_all(fd, value, strlen(value)) != 0)
        wl_die("writing %s", path);
    close(fd);
}

static int sysctl_is(const char *path, const char *value)
{
    char buf[128] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    if (n > 0 && buf[n - 1] == '\n')
        buf[n - 1] = 0;
    return n > 0 && strcmp(buf, value) == 0;
}

static void setup(void)
{
    if (sethostname(HOST, strlen(HOST)) != 0 || setdomainname(DOMAIN, strlen(DOMAIN)) != 0)
        wl_die("sethostname");
    for (size_t i = 0; i < sizeof sysctls / sizeof sysctls[0]; i++)
        write_sysctl(sysctls[i].path, sysctls[i].value);

    /* A set made and removed first: the kept one's id is not the first. */
    int first = semget(IPC_PRIVATE, 1, 0600);
    if (first < 0 || semctl(first, 0, IPC_RMID) != 0)
        wl_die("semget");
    semid = semget(SEM_KEY, 3, IPC_CREAT | IPC_EXCL | 0640);
    if (semid < 0 || semctl(semid, 0, SETALL, sem_values) != 0)
        wl_die("semget/SETALL");
    waiter = fork();
    if (waiter < 0)
        wl_die("fork");
    if (waiter == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct sembuf op = {1, -1, 0};
        while (semop(semid, &op, 1) != 0)
            if (errno != EINTR)
                _exit(3);
        _exit(0);
    }

    msqid = msgget(MSG_KEY, IPC_CREAT | IPC_EXCL | 0620);
    if (msqid < 0)
        wl_die("msgget");
    struct msqid_ds ds;
    if (msgctl(msqid, IPC_STAT, &ds) != 0)
        wl_die("IPC_STAT");
    ds.msg_qbytes = 5000;
    if (msgctl(msqid, IPC_SET, &ds) != 0)
        wl_die("IPC_SET");
    for (size_t i = 0; i < NMSGS; i++) {
        struct { long type; char text[64]; } m;
        m.type = msgs[i].type;
        memcpy(m.text, msgs[i].text, strlen(msgs[i].text));
        if (msgsnd(msqid, &m, strlen(msgs[i].text), IPC_NOWAIT) != 0)
            wl_die("msgsnd");
    }

    shmid = shmget(SHM_KEY, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0600);
    shm = shmid < 0 ? NULL : shmat(shmid, NULL, 0);
    if (shm == NULL || shm == (void *)-1)
        wl_die("shmget/shmat");
    for (int i = 0; i < SHM_SIZE; i++)
        shm[i] = (unsigned char)(i * 7 + 3);

    struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = 64};
    mq = mq_open(MQ_HELD, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0640, &attr);
    if (mq < 0)
        wl_die("mq_open");
    for (int i = 0; i < NMQ; i++)
        if (mq_send(mq, mq_sent[i].text, strlen(mq_sent[i].text), mq_sent[i].prio) != 0)
            wl_die("mq_send");
    mqd_t alone = mq_open(MQ_ALONE, O_CREAT | O_EXCL | O_WRONLY, 0600, &attr);
    if (alone < 0 || mq_send(alone, "by itself", 9, 4) != 0)
        wl_die("mq_open alone");
    mq_close(alone);
}

/* semncnt of the waited-on semaphore: 1 once the waiter waits again (a
 * restored waiter restarts its semop). */
static int waiter_waits(void)
{
    for (int i = 0; i < 300; i++) {
        if (semctl(semid, 1, GETNCNT) == 1)
            return 1;
        wl_sleep_ms(10);
    }
    return 0;
}

static void check_mq(struct wl_checks *c, mqd_t q, const char *name, const int *order, int n, int taken_ok)
{
    struct mq_attr a;
    if (!wl_check(c, mq_getattr(q, &a) == 0, "mq_getattr %s errno %d", name, errno))
        return;
    wl_check(c, a.mq_maxmsg == 8 && a.mq_msgsize == 64 && a.mq_curmsgs == n,
             "%s attributes: maxmsg %ld msgsize %ld curmsgs %ld, expected 8 64 %d", name, a.mq_maxmsg,
             a.mq_msgsize, a.mq_curmsgs, n);
    char got[NMQ][65];
    unsigned prio[NMQ];
    ssize_t len[NMQ];
    for (int i = 0; i < n && i < NMQ; i++) {
        len[i] = mq_receive(q, got[i], 64, &prio[i]);
        if (!wl_check(c, len[i] >= 0, "mq_receive %s %d: errno %d", name, i, errno))
            return;
        got[i][len[i]] = 0;
    }
    for (int i = 0; i < n && i < NMQ; i++) {
        if (order) {
            wl_check(c, strcmp(got[i], mq_sent[order[i]].text) == 0 && prio[i] == mq_sent[order[i]].prio,
                     "%s message %d: \"%s\" prio %u, expected \"%s\" prio %u", name, i, got[i], prio[i],
                     mq_sent[order[i]].text, mq_sent[order[i]].prio);
        } else {
            wl_check(c, strcmp(got[i], "by itself") == 0 && prio[i] == 4, "%s message: \"%s\" prio %u", name,
                     got[i], prio[i]);
        }
        if (!taken_ok)
            mq_send(q, got[i], (size_t)len[i], prio[i]);
    }
}

static void check_state(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    struct utsname u;
    uname(&u);
    wl_check(c, strcmp(u.nodename, HOST) == 0, "hostname \"%s\", expected \"%s\"", u.nodename, HOST);
    wl_check(c, strcmp(u.domainname, DOMAIN) == 0, "domainname \"%s\", expected \"%s\"", u.domainname, DOMAIN);
    for (size_t i = 0; i < sizeof sysctls / sizeof sysctls[0]; i++)
        wl_check(c, sysctl_is(sysctls[i].path, sysctls[i].value), "sysctl %s not \"%s\"", sysctls[i].path,
                 sysctls[i].value);

    /* Semaphores: the same id for the key, mode, values, one waiter. */
    wl_check(c, semget(SEM_KEY, 0, 0) == semid, "semaphore key %#x: id %d, expected %d", SEM_KEY,
             semget(SEM_KEY, 0, 0), semid);
    struct semid_ds sds;
    if (wl_check(c, semctl(semid, 0, IPC_STAT, &sds) == 0, "semctl IPC_STAT errno %d", errno))
        wl_check(c, (sds.sem_perm.mode & 0777) == 0640 && sds.sem_nsems == 3, "semaphore mode %o nsems %lu",
                 sds.sem_perm.mode & 0777, (unsigned long)sds.sem_nsems);
    unsigned short v[3] = {9, 9, 9};
    semctl(semid, 0, GETALL, v);
    wl_check(c, memcmp(v, sem_values, sizeof v) == 0, "semaphore values %u %u %u, expected 5 0 7", v[0], v[1], v[2]);
    wl_check(c, waiter_waits(), "semncnt of semaphore 1 is %d, expected 1 (the waiter)", semctl(semid, 1, GETNCNT));

    /* The message queue: id, mode, qbytes, every message by index. */
    wl_check(c, msgget(MSG_KEY, 0) == msqid, "message queue key %#x: id %d, expected %d", MSG_KEY,
             msgget(MSG_KEY, 0), msqid);
    struct msqid_ds mds;
    if (wl_check(c, msgctl(msqid, IPC_STAT, &mds) == 0, "msgctl IPC_STAT errno %d", errno))
        wl_check(c, (mds.msg_perm.mode & 0777) == 0620 && mds.msg_qbytes == 5000 && mds.msg_qnum == NMSGS,
                 "message queue mode %o qbytes %lu qnum %lu", mds.msg_perm.mode & 0777,
                 (unsigned long)mds.msg_qbytes, (unsigned long)mds.msg_qnum);
    for (size_t i = 0; i < NMSGS; i++) {
        struct { long type; char text[64]; } m;
        ssize_t n = msgrcv(msqid, &m, sizeof m.text, (long)i, IPC_NOWAIT | MSG_COPY);
        wl_check(c, n == (ssize_t)strlen(msgs[i].text) && m.type == msgs[i].type &&
                     memcmp(m.text, msgs[i].text, (size_t)n) == 0,
                 "message %zu: length %zd type %ld, expected \"%s\" type %ld", i, n, n >= 0 ? m.type : 0,
                 msgs[i].text, msgs[i].type);
    }

    /* The segment. */
    wl_check(c, shmget(SHM_KEY, 0, 0) == shmid, "segment key: id %d, expected %d", shmget(SHM_KEY, 0, 0), shmid);
    int bad = -1;
    for (int i = 0; i < SHM_SIZE && bad < 0; i++)
        if (shm[i] != (unsigned char)(i * 7 + 3))
            bad = i;
    wl_check(c, bad < 0, "segment byte %d differs", bad);

    /* POSIX queues: the held one through its fd, the other by name. */
    wl_check(c, (fcntl(mq, F_GETFL) & O_NONBLOCK) != 0, "the held queue's fd lost O_NONBLOCK");
    check_mq(c, mq, MQ_HELD, mq_order, NMQ, 0);
    mqd_t alone = mq_open(MQ_ALONE, O_RDWR | O_NONBLOCK);
    if (wl_check(c, alone >= 0, "mq_open %s errno %d", MQ_ALONE, errno)) {
        check_mq(c, alone, MQ_ALONE, NULL, 1, 0);
        mq_close(alone);
    }

    if (exiting) {
        struct { long type; char text[64]; } m;
        ssize_t n = msgrcv(msqid, &m, sizeof m.text, 3, IPC_NOWAIT);
        wl_check(c, n == 5 && memcmp(m.text, "gamma", 5) == 0, "msgrcv of type 3: %zd bytes", n);
        struct sembuf post = {1, 1, 0};
        semop(semid, &post, 1);
        int st = 0;
        pid_t r = waitpid(waiter, &st, 0);
        wl_check(c, r == waiter && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the waiter ended with status %#x", st);
    }
}

static char host_name[64];

static void check_host(struct wl_checks *c, int exiting, void *arg)
{
    (void)arg;
    struct mq_attr a;
    if (wl_check(c, mq_getattr(mq, &a) == 0, "mq_getattr of the host queue: errno %d", errno))
        wl_check(c, a.mq_maxmsg == 8 && a.mq_msgsize == 64 && a.mq_curmsgs == 2 && (a.mq_flags & O_NONBLOCK),
                 "host queue: maxmsg %ld msgsize %ld curmsgs %ld flags %#lx", a.mq_maxmsg, a.mq_msgsize,
                 a.mq_curmsgs, a.mq_flags);
    wl_check(c, (fcntl(mq, F_GETFL) & O_ACCMODE) == O_RDONLY, "the host queue's fd is not read-only");
    if (exiting)
        mq_unlink(host_name);
}

static void setup_host(int unlink_it)
{
    snprintf(host_name, sizeof host_name, "/cryo-e2e-host-%d", (int)getpid());
    struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = 64};
    mqd_t w = mq_open(host_name, O_CREAT | O_EXCL | O_WRONLY, 0600, &attr);
    if (w < 0 || mq_send(w, "one", 3, 1) != 0 || mq_send(w, "two", 3, 2) != 0)
        wl_die("host queue %s", host_name);
    mq_close(w);
    mq = mq_open(host_name, O_RDONLY | O_NONBLOCK);
    if (mq < 0)
        wl_die("mq_open %s", host_name);
    if (unlink_it)
        mq_unlink(host_name);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        wl_die("usage: ipcns CTL [MODE]");
    const char *mode = argc > 2 ? argv[2] : "";
    if (strncmp(mode, "host", 4) == 0) {
        setup_host(strcmp(mode, "host-unlink") == 0);
        wl_ready(argv[1]);
        wl_serve(argv[1], check_host, NULL, "host POSIX message queue fd");
    }
    if (strcmp(mode, "external") != 0 && unshare(CLONE_NEWIPC | CLONE_NEWUTS) != 0)
        wl_die("unshare");
    setup();
    if (strcmp(mode, "semop") == 0) {
        /* +1 then -1: the values are as before, but the process has an undo list. */
        struct sembuf ops[2] = {{2, 1, SEM_UNDO}, {2, -1, SEM_UNDO}};
        if (semop(semid, &ops[0], 1) != 0 || semop(semid, &ops[1], 1) != 0)
            wl_die("semop");
    } else if (strcmp(mode, "split") == 0) {
        pid_t child = fork();
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (unshare(CLONE_NEWIPC) != 0)
                _exit(3);
            for (;;)
                pause();
        }
        wl_sleep_ms(100);
    } else if (strcmp(mode, "notify") == 0) {
        struct sigevent ev = {.sigev_notify = SIGEV_NONE};
        if (mq_notify(mq, &ev) != 0)
            wl_die("mq_notify");
    } else if (strcmp(mode, "loose-shm") == 0) {
        if (shmget(0x10053, 4096, IPC_CREAT | 0600) < 0)
            wl_die("shmget");
    }
    wl_ready(argv[1]);
    wl_serve(argv[1], check_state, NULL, "ipc and uts namespaces");
}
