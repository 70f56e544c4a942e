#ifndef VX_SIGNALS_H
#define VX_SIGNALS_H
#include <stdint.h>

/// vxland's signal handling, in C so that it can be installed by a load-time constructor, before the Swift runtime
/// and Foundation start (a stop signal in those first tens of milliseconds would otherwise kill the process, or be
/// taken by the Swift backtracer and lost). The handler only sets bits in lock-free atomics.

/// Installs the handlers (SIGINT, SIGTERM, SIGQUIT: stop; SIGHUP, SIGUSR1, SIGUSR2: noted only), ignores SIGPIPE
/// and unblocks those signals (a blocked mask survives exec). Idempotent.
void vx_signals_install(void);
/// The signals received since the last call, one bit per signal number.
uint64_t vx_signals_take(void);
/// Non-zero once SIGINT, SIGTERM or SIGQUIT arrived; never cleared.
int vx_signals_stop_requested(void);

#endif
