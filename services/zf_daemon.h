/*  zf_daemon.h — `zfly -c FILE`: start the actors a configuration names and supervise them. */
#ifndef ZF_DAEMON_H_INCLUDED
#define ZF_DAEMON_H_INCLUDED

#include "zf_config.h"

//  Runs until SIGTERM/SIGINT (exit 0), an actor's death (exit 1) or a one-shot actor's DONE
//  (its exit code). Returns the process exit status.
int zf_daemon_run (zf_config_t *config);

#endif
