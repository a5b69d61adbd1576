import Foundation

/// Starts child processes one at a time within the test process.
///
/// Tests run in parallel and many of them start processes. On Linux, Foundation's `Process.run()` lists the open
/// descriptors, then spawns; a pipe or socket another thread opens in between is inherited by that child. Foundation
/// learns that a process ended when the last copy of a socket it gave that process closes, and a reader sees the end
/// of a pipe when the last copy of its write end closes: an inherited copy in a long-lived child (the canary, a
/// worker) kept a finished process "running", or a pipe open, until that other child ended. Creating the pipes and
/// calling `run()` inside this lock closes that window. (`posix_spawn` callers close inherited descriptors in the
/// child instead.)
public enum ProcessStart {
    private static let lock = NSLock()

    /// Runs `body`, which creates a process's pipes and calls `run()`, while no other test starts a process.
    public static func serialized<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
