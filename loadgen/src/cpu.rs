//! CPU time: a server's (any process, from `/proc/PID/stat`) and the load generator's own
//! (the calling thread or this process, from the kernel's CPU-time clocks).
//!
//! `/proc/PID/stat` counts whole-process user + system time, all threads included, in clock
//! ticks (`sysconf(_SC_CLK_TCK)`, usually 100 Hz: 10 ms resolution, fine for a run of seconds).
//! The clocks have nanosecond resolution.

use std::io;

/// utime + stime of `/proc/PID/stat` (all threads of the process), in ns.
pub fn process_cpu_ns(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)?;
    let (utime, stime) = parse_stat_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: no utime/stime fields in {stat:?}"),
        )
    })?;
    Ok(ticks_to_ns(utime + stime, sys::clock_ticks_per_sec()))
}

/// [`process_cpu_ns`] of `pid` and of every process below it (a supervisor's nodes:
/// the local three-AZ cluster is `ternd` and its three children). A child that exits
/// meanwhile takes its time with it; the runs measured here keep their processes.
pub fn process_tree_cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = process_cpu_ns(pid)?;
    for child in children(pid) {
        total += process_tree_cpu_ns(child).unwrap_or(0);
    }
    Ok(total)
}

/// The direct children of `pid` (`/proc/PID/task/*/children`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_ascii_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), in ns.
pub fn thread_cpu_ns() -> u64 {
    sys::cpu_clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// This process's CPU time, all threads (CLOCK_PROCESS_CPUTIME_ID), in ns.
pub fn own_process_cpu_ns() -> u64 {
    sys::cpu_clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// (utime, stime) in clock ticks from the text of `/proc/PID/stat`. The command name (field
/// 2) is in parentheses and may itself contain spaces and parentheses, so fields are counted
/// from the last ')': utime and stime are fields 14 and 15.
pub fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; utime is field 14.
    let mut fields = after_comm.split_ascii_whitespace().skip(14 - 3);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

fn ticks_to_ns(ticks: u64, ticks_per_sec: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_sec.max(1))) as u64
}

/// The only unsafe code of this module: two libc calls.
#[allow(unsafe_code)]
mod sys {
    /// `sysconf(_SC_CLK_TCK)`, or Linux's usual 100 if it fails.
    pub fn clock_ticks_per_sec() -> u64 {
        // SAFETY: sysconf reads a configuration value; it has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 { hz as u64 } else { 100 }
    }

    /// The value of a CPU-time clock in ns (0 if the clock is unavailable, which Linux never
    /// reports for the thread and process clocks).
    pub fn cpu_clock_ns(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        if rc != 0 {
            return 0;
        }
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_after_a_tricky_command_name() {
        // Fields 3.. of a real stat line, with a name containing ") (" and spaces.
        let stat = "1234 (we ird) (name) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 4 0 12345 1000000 200 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some((250, 75)));
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn ticks_convert_to_ns() {
        assert_eq!(ticks_to_ns(325, 100), 3_250_000_000);
        assert_eq!(ticks_to_ns(1, 250), 4_000_000);
    }

    #[test]
    fn own_process_is_readable_and_counts_work() {
        let before_thread = thread_cpu_ns();
        // Burn at least 50 ms of CPU (several /proc ticks), however fast the build is;
        // bounded by 10 s of wall time.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while thread_cpu_ns() < before_thread + 50_000_000 && started.elapsed().as_secs() < 10 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let after_thread = thread_cpu_ns();
        assert!(
            after_thread >= before_thread + 50_000_000,
            "the loop burnt 50 ms of CPU"
        );
        assert!(after_thread > before_thread);
        let proc_ns = process_cpu_ns(std::process::id()).expect("own /proc/PID/stat");
        // /proc has tick resolution; the process has burnt well over one tick by now.
        assert!(proc_ns > 0);
        assert!(own_process_cpu_ns() >= after_thread);
    }

    #[test]
    fn missing_process_is_not_found() {
        // PIDs are below 2^22 on Linux.
        let err = process_cpu_ns(u32::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
