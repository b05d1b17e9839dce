import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SessionClient
import SessionModel

/// What an import did, line by line.
struct ImportReport: Sendable {
    enum Outcome: Sendable {
        case imported
        case unchanged
        case refused(String?, String)
    }

    var imported = 0
    var unchanged = 0
    var refused: [(line: Int, id: String?, reason: String)] = []

    mutating func add(_ line: JSONLines.Line, importing: (Data) async -> Outcome) async {
        switch line {
        case .tooLong(let number, let limit):
            refuse(line: number, id: nil, "the line is longer than \(limit) bytes, the largest record a host takes; it was not read")
        case .text(let number, let text):
            switch await importing(text) {
            case .imported: imported += 1
            case .unchanged: unchanged += 1
            case .refused(let id, let reason): refuse(line: number, id: id, reason)
            }
        }
    }

    mutating func refuse(line: Int, id: String?, _ reason: String) {
        refused.append((line, id, reason))
    }

    var json: JSONValue {
        .object([
            "imported": .int(Int64(imported)), "unchanged": .int(Int64(unchanged)),
            "refused": .array(
                refused.prefix(1_000).map { item in
                    var entry: JSONObject = ["line": .int(Int64(item.line)), "reason": .string(item.reason)]
                    if let id = item.id { entry["id"] = .string(id) }
                    return .object(entry)
                }),
        ])
    }
}

/// Lines of a JSON Lines body as they arrive, each at most `limit` bytes, each with its number
/// in the body (counting blank lines, which are skipped): a line over the limit is skipped to
/// its end and reported by its own number, and the lines after it are read as usual.
struct JSONLines: Sendable {
    let limit: Int
    private var pending: [UInt8] = []
    /// Whether the line being read is already over the limit (its bytes are dropped).
    private var overlong = false
    /// Lines ended so far, blank ones included.
    private(set) var number = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// One line of the body: its text, or the fact that it was longer than the limit.
    enum Line: Sendable, Equatable {
        case text(number: Int, Data)
        case tooLong(number: Int, limit: Int)
    }

    mutating func feed(_ buffer: ByteBuffer) -> [Line] {
        var lines: [Line] = []
        buffer.withUnsafeReadableBytes { bytes in
            var rest = bytes[...]
            while !rest.isEmpty {
                let end = rest.firstIndex(of: UInt8(ascii: "\n"))
                add(UnsafeRawBufferPointer(rebasing: rest[..<(end ?? rest.endIndex)]))
                guard let end else { break }
                if let line = take() { lines.append(line) }
                rest = rest[(end + 1)...]
            }
        }
        return lines
    }

    /// Part of the line being read; past the limit its bytes are no longer kept.
    private mutating func add(_ part: UnsafeRawBufferPointer) {
        guard !overlong else { return }
        guard pending.count + part.count <= limit else {
            overlong = true
            pending.removeAll(keepingCapacity: true)
            return
        }
        pending.append(contentsOf: part)
    }

    /// The last line, when the body does not end with a line feed.
    mutating func finish() -> Line? {
        guard !pending.isEmpty || overlong else { return nil }
        return take()
    }

    private mutating func take() -> Line? {
        number += 1
        defer {
            pending.removeAll(keepingCapacity: true)
            overlong = false
        }
        if overlong { return .tooLong(number: number, limit: limit) }
        let blank = pending.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }
        return blank ? nil : .text(number: number, Data(pending))
    }
}

extension SessionRecord {
    /// The same conversation: messages, metadata, times and lifetime (the id aside).
    func sameContent(as other: SessionRecord) -> Bool {
        messages == other.messages && metadata == other.metadata && createdAt == other.createdAt && lastUpdated == other.lastUpdated
            && expiresAfter == other.expiresAfter
    }
}
