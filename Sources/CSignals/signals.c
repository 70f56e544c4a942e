#include "vx_signals.h"

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

static _Atomic uint64_t received;
static _Atomic int stop_requested;

static void on_signal(int sig) {
    if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT) atomic_store(&stop_requested, 1);
    if (sig > 0 && sig < 64) atomic_fetch_or(&received, (uint64_t)1 << sig);
}

void vx_signals_install(void) {
    static const int handled[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 };
    struct sigaction action = { 0 };
    sigset_t unblock;
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;   /* never make a blocking call on another thread fail with EINTR */
    sigemptyset(&unblock);
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) {
        sigaction(handled[i], &action, NULL);
        sigaddset(&unblock, handled[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
}

uint64_t vx_signals_take(void) { return atomic_exchange(&received, 0); }

int vx_signals_stop_requested(void) { return atomic_load(&stop_requested); }

/* Only a program that asks for it (vxland defines this function) gets the handlers at load time; the test
   processes that link the daemon's code keep the default dispositions. */
extern int vx_install_signals_at_load(void) __attribute__((weak));

__attribute__((constructor)) static void install_early(void) {
    if (vx_install_signals_at_load != NULL && vx_install_signals_at_load()) vx_signals_install();
}
