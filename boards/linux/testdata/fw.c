/* A tiny host firmware for credloop's linux board tests: it prints its
 * identity from the environment, a coloured line, takes commands on stdin
 * and relies on stdio's line buffering on a terminal (no fflush). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *id = getenv("FW_PSK_ID"), *psk = getenv("FW_PSK"), *cert = getenv("FW_CERT");
    char line[512];
    printf("boot: %s tty=%d\n", argc > 1 ? argv[1] : "fw", isatty(1));
    printf("psk_id=%s\n", id ? id : "(none)");
    if (psk) printf("psk=%s len=%zu\n", psk, strlen(psk));
    if (cert) printf("cert=%s\n", cert);
    printf("\033[32mgreen ready\033[0m\n");
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (strncmp(line, "exit ", 5) == 0) {
            printf("bye\n");
            return atoi(line + 5);
        } else if (strncmp(line, "write ", 6) == 0) {
            char *slash = strrchr(line + 6, '/');
            if (slash) { *slash = 0; mkdir(line + 6, 0700); *slash = '/'; }
            FILE *f = fopen(line + 6, "w");
            if (f) { fputs("data\n", f); fclose(f); }
            printf("wrote %s\n", line + 6);
        } else if (strcmp(line, "ignore-term") == 0) {
            signal(SIGTERM, SIG_IGN);
            printf("ignoring SIGTERM\n");
        } else if (strcmp(line, "spawn") == 0) {
            pid_t pid = fork();
            if (pid == 0) { for (;;) pause(); }
            printf("child %d\n", (int)pid);
        } else if (strcmp(line, "connect") == 0) {
            printf("Golioth CoAP client connected\n");
        } else {
            printf("echo: %s\n", line);
        }
    }
    return 0;
}
