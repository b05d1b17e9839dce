import Foundation

/// A small file system of its own (tmpfs, mounted for the test; the tests run as root), to be
/// filled up: how a test makes a disk full without filling the machine's.
public final class SmallDisk: Sendable {
    public let directory: TemporaryDirectory
    private let filler: String

    public init(megabytes: Int) throws {
        directory = TemporaryDirectory("disk")
        filler = directory.file("filler")
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", directory.path]
        try launch(mount)
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else {
            throw ServiceProcess.Failure(description: "could not mount a tmpfs at \(directory.path) (the tests run as root)")
        }
    }

    /// Writes a file until no byte more fits.
    public func fill() throws {
        _ = FileManager.default.createFile(atPath: filler, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: filler) else { throw ServiceProcess.Failure(description: "cannot write \(filler)") }
        defer { try? handle.close() }
        let block = Data(count: 64 * 1024)
        while (try? handle.write(contentsOf: block)) != nil {}
        let byte = Data(count: 1)
        while (try? handle.write(contentsOf: byte)) != nil {}
    }

    /// Deletes what `fill` wrote.
    public func free() {
        try? FileManager.default.removeItem(atPath: filler)
    }

    /// Mounts the file system again, read-only: what a backup kept on read-only media looks like.
    public func makeReadOnly() throws {
        let remount = Process()
        remount.executableURL = URL(fileURLWithPath: "/bin/mount")
        remount.arguments = ["-o", "remount,ro", directory.path]
        try launch(remount)
        remount.waitUntilExit()
        guard remount.terminationStatus == 0 else { throw ServiceProcess.Failure(description: "could not remount \(directory.path) read-only") }
    }

    /// Unmounts the file system.
    public func remove() {
        let umount = Process()
        umount.executableURL = URL(fileURLWithPath: "/bin/umount")
        umount.arguments = ["-l", directory.path]
        try? launch(umount)
        umount.waitUntilExit()
    }
}
