import Foundation
import Logging

/// Log lines on standard error, in the format of swift-log's `StreamLogHandler`
/// (`<time> <level> <label>: <key=value ...> [<source>] <message>`), with metadata formatted
/// only when a line is written: Hummingbird sets a request id on every request's logger,
/// and `StreamLogHandler` formats its metadata at every such set, a few percent of a host's
/// CPU under load for lines that are never written.
public struct StandardErrorLogHandler: LogHandler {
    public let label: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]

    public init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = event.metadata.map { metadata.merging($0) { $1 } } ?? metadata
        var text = "\(Self.timestamp()) \(event.level) \(label):"
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) { text += " \(key)=\(value)" }
        text += " [\(event.source)] \(event.message)\n"
        // One write(2) per line: lines of several threads never interleave.
        text.utf8CString.withUnsafeBufferPointer { bytes in
            _ = bytes.baseAddress.map { write(STDERR_FILENO, $0, bytes.count - 1) }
        }
    }

    private static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [Int8](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
