import Foundation

/// Names one running process across the machine's lifetime: boot id, pid and the process's start time, so that a
/// pid reused after a crash, or a reboot, is never mistaken for the process that left work behind.
///
/// Work in progress (an intake being read, a delivery under way, a temporary file) is marked with its owner's
/// identity; recovery touches only work whose owner ``isAlive`` says is gone. Several processes sharing one data
/// folder (a `submit` and a `deliveries` beside it, two `submit`s) therefore never clean up each other's work.
public struct ProcessIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The kernel's boot id without dashes (empty where the system has none).
    public let bootID: String
    public let pid: Int32
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22; 0 where unknown).
    public let startTicks: UInt64

    public init(bootID: String, pid: Int32, startTicks: UInt64) {
        self.bootID = bootID
        self.pid = pid
        self.startTicks = startTicks
    }

    /// This process.
    public static let current = ProcessIdentity(bootID: bootID, pid: getpid(), startTicks: startTicks(of: getpid()) ?? 0)

    /// The running process `pid` (this boot), or nil when there is none.
    public static func running(pid: Int32) -> ProcessIdentity? {
        startTicks(of: pid).map { ProcessIdentity(bootID: bootID, pid: pid, startTicks: $0) }
    }

    /// `BOOT-PID-START`: letters, digits and dashes only, so it can stand in a file name.
    public var description: String { "\(bootID)-\(pid)-\(startTicks)" }

    /// Parses ``description``; nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, let pid = Int32(parts[1]), pid > 0, let start = UInt64(parts[2]),
              parts[0].allSatisfy({ $0.isHexDigit }) else { return nil }
        self.init(bootID: String(parts[0]), pid: pid, startTicks: start)
    }

    /// Whether the process is still running: same boot, the pid exists, and it started at the same tick.
    public var isAlive: Bool {
        if self == .current { return true }
        guard bootID == Self.bootID else { return false }
        if let start = Self.startTicks(of: pid) { return startTicks == 0 || start == startTicks }
        // No /proc (another system): the pid alone.
        return FileManager.default.fileExists(atPath: "/proc/self") ? false : (kill(pid, 0) == 0 || errno == EPERM)
    }

    private static let bootID: String = {
        let text = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? ""
        return text.filter { $0.isHexDigit }.lowercased()
    }()

    /// Field 22 of `/proc/PID/stat` (after the command name, which may itself hold spaces and parentheses).
    static func startTicks(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state; a zombie has finished its work); field 22 is fields[19].
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else { return nil }
        return UInt64(fields[19])
    }
}
