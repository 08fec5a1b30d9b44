//! The daemon's signals from its first instruction on. SIGHUP (reload), SIGTERM and SIGINT
//! (stop) are blocked at once, so one that arrives during start-up (a reload sent while
//! the rules are being installed) stays pending instead of killing the process with the
//! default action; once the handlers are installed they are unblocked and a pending one is
//! handled like any other.

const HANDLED: [i32; 3] = [libc::SIGHUP, libc::SIGTERM, libc::SIGINT];

fn mask(how: i32) {
    // SAFETY: builds a signal set on the stack and changes this thread's mask; threads
    // started afterwards inherit it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Call first thing in the process (before any thread exists).
pub fn block_early() {
    mask(libc::SIG_BLOCK);
}

/// Call once the handlers are installed.
pub fn unblock() {
    mask(libc::SIG_UNBLOCK);
}
