/* peak-rss OUT COMMAND [ARG...]: runs COMMAND and writes its peak resident memory (KiB) and exit status to OUT.
 * A small parent on purpose: the kernel counts the memory of the process that execs into the child's peak, so
 * spawning from Python would put Python's ~18 MiB under every tool measured. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: peak-rss OUT COMMAND [ARG...]\n"); return 2; }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) { execvp(argv[2], argv + 2); perror("exec"); _exit(127); }
    int status = 0;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) { perror("wait4"); return 2; }
    FILE *out = fopen(argv[1], "w");
    if (out == NULL) { perror(argv[1]); return 2; }
    fprintf(out, "%ld %d\n", usage.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    fclose(out);
    return 0;
}
