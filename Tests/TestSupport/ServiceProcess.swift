import Foundation
import Synchronization

/// Where the package's executables were built: `GREPTILE_MCP_BIN_DIR`, or next to the test binary.
public enum BuiltProducts {
    public static var directory: URL {
        if let explicit = ProcessInfo.processInfo.environment["GREPTILE_MCP_BIN_DIR"] {
            return URL(fileURLWithPath: explicit)
        }
        // The test runner is .build/<triple>/debug/<package>PackageTests.xctest.
        let runner = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var candidate = runner.deletingLastPathComponent()
        while candidate.path != "/" {
            if FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("durable-host").path) {
                return candidate
            }
            candidate = candidate.deletingLastPathComponent()
        }
        return runner.deletingLastPathComponent()
    }

    public static func path(_ product: String) -> String {
        directory.appendingPathComponent(product).path
    }
}

/// A directory under /tmp, removed when the value is released.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "greptile-mcp-test") {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        self.path = path
    }

    public func file(_ name: String) -> String {
        (path as NSString).appendingPathComponent(name)
    }

    deinit {
        if ProcessInfo.processInfo.environment["KEEP_TEST_FILES"] == nil {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}

/// A real child process: one of our executables, or any program, with its output in a log file.
public final class ServiceProcess: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public let logPath: String
    private let process: Process
    private let exit = ExitState()

    private final class ExitState: Sendable {
        let status = Mutex<Int32?>(nil)
    }

    /// Starts `executable` with `arguments`; the environment adds `environment` to ours.
    public init(executable: String, arguments: [String], environment: [String: String] = [:], logPath: String) throws {
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process = Process()
        // Foundation starts the child as the leader of a process group of its own, so the
        // whole group (nginx's or PostgreSQL's children too) can be signalled at once.
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        let exit = self.exit
        process.terminationHandler = { finished in
            let status = finished.terminationStatus
            exit.status.withLock { $0 = status }
        }
        try launch(process)
        try? log.close()
        ProcessReaper.shared.adopt(process.processIdentifier)
    }

    public var pid: Int32 { process.processIdentifier }

    /// The log so far.
    public var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Waits for `listening on http://ADDRESS` in the log; returns `http://ADDRESS`.
    public func waitForListening(timeout: Duration = .seconds(60)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let range = log.range(of: #"listening on (https?://[0-9.:\[\]a-f]+)"#, options: .regularExpression) {
                return String(log[range].dropFirst("listening on ".count))
            }
            if let status = exitStatus {
                throw Failure(description: "process exited with \(status) before listening:\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw Failure(description: "process did not announce its address within \(timeout):\n\(log)")
    }

    /// Sends a signal (SIGTERM, SIGKILL, SIGHUP...).
    public func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Sends a signal to the process and everything it started.
    public func signalGroup(_ signal: Int32) {
        kill(-process.processIdentifier, signal)
    }

    public var exitStatus: Int32? { exit.status.withLock { $0 } }

    /// Waits for the process to end; returns its status (or the signal number for a signal death).
    /// Polled, so that the wait ends at its timeout (or when cancelled) whatever happens.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exitStatus { return status }
            try await Task.sleep(for: .milliseconds(20))
        }
        if let status = exitStatus { return status }
        signal(SIGKILL)
        throw Failure(description: "process did not exit within \(timeout):\n\(log)")
    }

    /// Stops the process with SIGTERM and waits; SIGKILL if it lingers.
    public func stop() async {
        guard exitStatus == nil else { return }
        signal(SIGTERM)
        _ = try? await waitForExit(timeout: .seconds(20))
    }

    deinit {
        if process.isRunning {
            kill(-process.processIdentifier, SIGKILL)
            kill(process.processIdentifier, SIGKILL)
        }
    }
}

/// Starts a child process, one at a time in this test process. Foundation's `Process` (on
/// Linux) learns of a child's exit through a socket whose other end only that child holds, and
/// chooses the descriptors a new child must not inherit before it spawns it: a child spawned
/// at the same moment from another thread could inherit a sibling's socket, and the sibling's
/// exit would go unseen until that child ended too (seen: a runner waiting for ever on a
/// zombie). Spawning one at a time leaves no such moment.
public func launch(_ process: Process) throws {
    try launching.withLock { _ in try process.run() }
}

private let launching = Mutex(())

/// Runs blocking work (a child process waited for, a lock held while one runs) on a thread of
/// its own, never on the cooperative pool: on two cores that pool has two threads, and an
/// `initdb` blocking one of them stalls every test's timers, polls and cancellations meanwhile.
public func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Kills every process a test started if the test runner itself dies (a crash in a test), so
/// none is left running: a small shell process, started once per run, that waits for the
/// runner to go and then kills each recorded process group.
final class ProcessReaper: Sendable {
    static let shared = ProcessReaper()
    private let file: String
    private let started = Mutexed(false)

    private init() {
        file = FileManager.default.temporaryDirectory.appendingPathComponent("greptile-mcp-test-pids-\(getpid())").path
        _ = FileManager.default.createFile(atPath: file, contents: nil)
    }

    func adopt(_ pid: Int32) {
        // With its start time: a pid reused by another process after ours ended is left alone.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        let fields = stat.split(separator: ")").last.map { $0.split(separator: " ") } ?? []
        let started = fields.count > 19 ? String(fields[19]) : "?"
        record("kill \(pid) \(started)")
    }

    /// Removes `path` once the test run is over (what lives as long as the run does).
    func removeAtExit(_ path: String) {
        record("remove \(path)")
    }

    private func record(_ line: String) {
        if let handle = FileHandle(forWritingAtPath: file) {
            handle.seekToEndOfFile()
            handle.write(Data("\(line)\n".utf8))
            try? handle.close()
        }
        let first = started.update { started -> Bool in
            defer { started = true }
            return !started
        }
        guard first else { return }
        let reaper = Process()
        reaper.executableURL = URL(fileURLWithPath: "/bin/sh")
        let script = """
            while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done
            while read what target started; do
                case "$what" in
                    kill)
                        now=$(sed 's/.*) //' /proc/"$target"/stat 2>/dev/null | cut -d' ' -f20)
                        [ -n "$now" ] && [ "$now" = "$started" ] && kill -9 -"$target" "$target" 2>/dev/null ;;
                    remove) rm -rf "$target" ;;
                esac
            done < '\(file)'
            rm -f '\(file)'
            """
        reaper.arguments = ["-c", script]
        reaper.standardInput = FileHandle.nullDevice
        reaper.standardOutput = FileHandle.nullDevice
        reaper.standardError = FileHandle.nullDevice
        try? launch(reaper)
    }
}

/// `count` consecutive TCP ports on 127.0.0.1 that were free a moment ago, below the
/// kernel's ephemeral range (so no outgoing connection of another test takes one meanwhile),
/// and never handed out before in this test run: a port chosen for a process that binds it
/// only later (a stack's PostgreSQL, after its initdb) is not given to a test running beside.
public func freeLoopbackPortRange(_ count: Int) -> Int {
    while true {
        let base = Int.random(in: 10_000...(30_000 - count))
        let range = base..<(base + count)
        guard range.allSatisfy(isFreeLoopbackPort) else { continue }
        let reserved = handedOutPorts.update { handed -> Bool in
            guard !range.contains(where: handed.contains) else { return false }
            handed.formUnion(range)
            return true
        }
        if reserved { return base }
    }
}

/// Every port `freeLoopbackPortRange` gave out in this process.
private let handedOutPorts = Mutexed<Set<Int>>([])

/// Whether a TCP port on 127.0.0.1 can be bound now.
public func isFreeLoopbackPort(_ port: Int) -> Bool {
    let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port)).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for processes that must know each
/// other's addresses before they start (ring members).
public func freeLoopbackPort() -> Int {
    freeLoopbackPortRange(1)
}
