/*  zf_secret.c — secrets in memory (see zf_secret.h). */
#include "zf_secret.h"

char *zf_secret_read_line (const char *path, const char *stop)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    char line[512] = "";
    if (!fgets (line, sizeof line, file))
        line[0] = '\0';
    fclose (file);
    line[strcspn (line, stop)] = '\0';
    char *secret = zf_strdup (line);
    explicit_bzero (line, sizeof line);
    return secret;
}

void zf_secret_free (char *text)
{
    if (text) {
        explicit_bzero (text, strlen (text));
        zf_free (text);
    }
}

void zf_secret_test (bool verbose)
{
    if (verbose)
        printf (" * zf_secret: ");
    char path[] = "/tmp/zf_secret_test.XXXXXX";
    int fd = mkstemp (path);
    ZF_ASSERT (fd >= 0);
    static const char text[] = "pass word\twith blanks\r\nsecond line\n";
    ZF_ASSERT (write (fd, text, sizeof text - 1) == (ssize_t) (sizeof text - 1));
    close (fd);
    char *password = zf_secret_read_line (path, "\r\n");
    ZF_ASSERT (password && streq (password, "pass word\twith blanks"));
    zf_secret_free (password);
    char *token = zf_secret_read_line (path, "\r\n \t");
    ZF_ASSERT (token && streq (token, "pass"));
    zf_secret_free (token);
    ZF_ASSERT (truncate (path, 0) == 0); //  an empty file: an empty secret
    char *empty = zf_secret_read_line (path, "\r\n");
    ZF_ASSERT (empty && streq (empty, ""));
    zf_secret_free (empty);
    unlink (path);
    errno = 0;
    ZF_ASSERT (!zf_secret_read_line (path, "\r\n") && errno == ENOENT);
    zf_secret_free (NULL);
    if (verbose)
        printf ("OK\n");
}
