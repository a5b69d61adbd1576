import Foundation

/// Names one running process across the machine's lifetime: machine, boot, pid namespace, pid and the process's
/// start time, so that a pid reused after a crash, or a reboot, is never mistaken for the process that left work
/// behind.
///
/// Work in progress (an intake being read, a delivery under way, a temporary file) is marked with its owner's
/// identity; recovery touches only work whose owner ``isAlive`` says is gone. Several processes sharing one data
/// folder (a `submit` and a `deliveries` beside it, two `submit`s) therefore never clean up each other's work.
/// Only processes of the same machine and pid namespace can be judged: work of a process on another machine or in
/// another container is always treated as alive, so it is never taken over behind its back (the embedded ledger is
/// meant for one machine; a shared PostgreSQL ledger is the way to spread work over several).
public struct ProcessIdentity: Sendable, Hashable, CustomStringConvertible {
    /// `/etc/machine-id` (else the host name), letters and digits only.
    public let machineID: String
    /// The kernel's boot id without dashes (empty where the system has none).
    public let bootID: String
    /// The inode of the process's pid namespace (`/proc/self/ns/pid`; 0 where unknown).
    public let pidNamespace: UInt64
    public let pid: Int32
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22; 0 where unknown).
    public let startTicks: UInt64

    /// An identity; machine and pid namespace default to this process's.
    public init(machineID: String = ProcessIdentity.current.machineID, bootID: String,
                pidNamespace: UInt64 = ProcessIdentity.current.pidNamespace, pid: Int32, startTicks: UInt64) {
        self.machineID = machineID
        self.bootID = bootID
        self.pidNamespace = pidNamespace
        self.pid = pid
        self.startTicks = startTicks
    }

    /// This process.
    public static let current = ProcessIdentity(machineID: machineID, bootID: bootID, pidNamespace: pidNamespace,
                                                pid: getpid(), startTicks: startTicks(of: getpid()) ?? 0)

    /// The running process `pid` of this machine, boot and pid namespace, or nil when there is none.
    public static func running(pid: Int32) -> ProcessIdentity? {
        startTicks(of: pid).map { ProcessIdentity(bootID: bootID, pid: pid, startTicks: $0) }
    }

    /// `MACHINE-BOOT-PIDNS-PID-START`: letters, digits and dashes only, so it can stand in a file name.
    public var description: String { "\(machineID)-\(bootID)-\(pidNamespace)-\(pid)-\(startTicks)" }

    /// Parses ``description``; nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].allSatisfy({ $0.isLetter || $0.isNumber }), parts[1].allSatisfy(\.isHexDigit),
              let namespace = UInt64(parts[2]), let pid = Int32(parts[3]), pid > 0, let start = UInt64(parts[4]) else {
            return nil
        }
        self.init(machineID: String(parts[0]), bootID: String(parts[1]), pidNamespace: namespace, pid: pid, startTicks: start)
    }

    /// Whether the process may still be running. Gone: same machine but another boot, or same machine, boot and pid
    /// namespace with no process of that pid and start time. Another machine or pid namespace cannot be looked
    /// into, so such an owner counts as running.
    public var isAlive: Bool {
        let here = Self.current
        if self == here { return true }
        guard machineID == here.machineID else { return true }
        guard bootID == here.bootID else { return false }
        guard pidNamespace == here.pidNamespace || pidNamespace == 0 || here.pidNamespace == 0 else { return true }
        if let start = Self.startTicks(of: pid) { return startTicks == 0 || start == startTicks }
        // No /proc (another system): the pid alone.
        return FileManager.default.fileExists(atPath: "/proc/self") ? false : (kill(pid, 0) == 0 || errno == EPERM)
    }

    private static let machineID: String = {
        let text = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))
            ?? ProcessInfo.processInfo.hostName
        let cleaned = text.lowercased().filter { ($0.isLetter || $0.isNumber) && $0.isASCII }
        return cleaned.isEmpty ? "unknown" : cleaned
    }()

    private static let bootID: String = {
        let text = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? ""
        return text.filter { $0.isHexDigit }.lowercased()
    }()

    private static let pidNamespace: UInt64 = {
        var info = stat()
        return stat("/proc/self/ns/pid", &info) == 0 ? UInt64(info.st_ino) : 0
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
