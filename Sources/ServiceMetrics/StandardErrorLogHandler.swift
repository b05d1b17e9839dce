import Foundation
import Logging
import SessionModel

/// Log lines on standard error: in the format of swift-log's `StreamLogHandler`
/// (`<time> <level> <label>: <key=value ...> [<source>] <message>`), or as JSON lines (`json`:
/// one object per line with `time`, `level`, `label`, `message`, `source` and the metadata's
/// keys, those of a `metadataProvider` among them).
///
/// Metadata is formatted only when a line is written: Hummingbird sets a request id on every
/// request's logger, and `StreamLogHandler` formats its metadata at every such set, a few
/// percent of a host's CPU under load for lines that are never written.
public struct StandardErrorLogHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    public let label: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let format: Format

    public init(label: String, logLevel: Logger.Level, format: Format = .text, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = logLevel
        self.format = format
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let own = event.metadata { merged.merge(own) { $1 } }
        var text: String
        switch format {
        case .text:
            text = "\(Self.timestamp()) \(event.level) \(label):"
            for (key, value) in merged.sorted(by: { $0.key < $1.key }) { text += " \(key)=\(value)" }
            text += " [\(event.source)] \(event.message)\n"
        case .json:
            text = Self.jsonLine(
                time: Self.timestamp(), level: "\(event.level)", label: label, message: "\(event.message)", source: event.source, metadata: merged)
        }
        // One write(2) per line: lines of several threads never interleave.
        text.utf8CString.withUnsafeBufferPointer { bytes in
            _ = bytes.baseAddress.map { write(STDERR_FILENO, $0, bytes.count - 1) }
        }
    }

    /// One JSON object and a newline; metadata values as strings (lists and dictionaries as
    /// their description), the fixed keys first and never overwritten by metadata.
    static func jsonLine(time: String, level: String, label: String, message: String, source: String, metadata: Logger.Metadata) -> String {
        var line = "{"
        var first = true
        func field(_ key: String, _ value: String) {
            line += first ? "" : ","
            first = false
            JSONValue.writeString(key, to: &line)
            line += ":"
            JSONValue.writeString(value, to: &line)
        }
        field("time", time)
        field("level", level)
        field("label", label)
        field("message", message)
        field("source", source)
        let fixed: Set<String> = ["time", "level", "label", "message", "source"]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) where !fixed.contains(key) { field(key, "\(value)") }
        return line + "}\n"
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
