//! Another process's CPU time, for `--server-pid`.

use std::io;

/// The CPU-time clock of another process on this machine: user + system time
/// of all its threads (exited ones included), to the nanosecond. It is the
/// quantity `/proc/PID/stat`'s utime+stime round to clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct ProcessCpuClock {
    clock: libc::clockid_t,
}

impl ProcessCpuClock {
    /// The clock of process `pid`; fails if there is no such process. Pid 0
    /// (which would mean the caller) and pids above Linux's ceiling of 2^22
    /// (which the clock id cannot encode) are refused.
    pub fn of(pid: u32) -> io::Result<ProcessCpuClock> {
        const PID_MAX_LIMIT: u32 = 1 << 22;
        let pid = match pid {
            1..=PID_MAX_LIMIT => pid as libc::pid_t,
            _ => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
        };
        let mut clock: libc::clockid_t = 0;
        // SAFETY: writes one clockid_t into `clock`.
        let rc = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let c = ProcessCpuClock { clock };
        c.now()?; // a pid that exists but cannot be read fails here, not later
        Ok(c)
    }

    /// CPU time used so far.
    pub fn now(&self) -> io::Result<std::time::Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec into `ts`.
        if unsafe { libc::clock_gettime(self.clock, &mut ts) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::time::Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_clock_advances_and_missing_pid_fails() {
        let clock = ProcessCpuClock::of(std::process::id()).unwrap();
        let t0 = clock.now().unwrap();
        let mut x = 0u64;
        while clock.now().unwrap() < t0 + std::time::Duration::from_millis(5) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(x > 0);
        assert!(ProcessCpuClock::of(0).is_err(), "0 would be this process");
        assert!(ProcessCpuClock::of(i32::MAX as u32).is_err());
    }
}
