//! Who owns a running run: the process that writes its heartbeat, named
//! `host:pid:start` (`start` is the process's start time in clock ticks since boot, so
//! that a reused pid is not taken for the process that died).
//!
//! A heartbeat tells a lost process from a live one only after a few beats; on the same
//! machine the kernel can say at once, which is what lets `resume` follow a `kill -9`
//! without waiting.

/// This process's owner name.
pub(super) fn this_process() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", hostname(), start_time(pid).unwrap_or(0))
}

/// Whether the owner is known to be gone: a process of this machine that no longer runs
/// (or whose pid now belongs to another process). Another machine's owner is never known
/// to be gone here; its heartbeat says.
pub(super) fn is_gone(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    if host != hostname() || start == 0 {
        return false;
    }
    start_time(pid) != Some(start)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), or `None` if it is not running.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_gone() {
        assert!(!is_gone(&this_process()));
    }

    #[test]
    fn a_dead_pid_or_a_reused_one_is_gone() {
        let me = this_process();
        let (rest, _) = me.rsplit_once(':').expect("owner has a start");
        assert!(
            is_gone(&format!("{rest}:1")),
            "another start time: a reused pid"
        );
        let (host, _) = rest.rsplit_once(':').expect("owner has a pid");
        assert!(is_gone(&format!("{host}:4194304:5")), "a pid above pid_max");
    }

    #[test]
    fn another_machine_or_a_strange_name_is_never_known_gone() {
        assert!(!is_gone("elsewhere:1:2"));
        assert!(!is_gone("nonsense"));
        assert!(!is_gone(""));
    }
}
