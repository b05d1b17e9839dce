import Foundation
import Settings

/// The keys clients present (`Authorization: Bearer <key>`), each with the name of its principal.
///
/// Written `NAME:KEY`, one per line of `api_keys_file` or comma-separated in
/// `MCP_WORKER_API_KEYS`. Sessions and conversations belong to the NAME, so a key can be
/// rotated without losing them, and logs name the principal, never the key.
public struct APIKeys: Sendable {
    struct Entry: Sendable {
        let principal: String
        let key: [UInt8]
    }

    private let entries: [Entry]

    public static let none = APIKeys(entries: [])

    private init(entries: [Entry]) {
        self.entries = entries
    }

    /// Parses `NAME:KEY` items; `origin` names where they came from, for errors.
    public init(parsing items: [String], origin: String) throws(SettingsError) {
        var entries: [Entry] = []
        var names: Set<String> = []
        for (index, item) in items.enumerated() {
            let trimmed = item.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = trimmed.firstIndex(of: ":") else {
                throw SettingsError("\(origin), item \(index + 1): write keys as NAME:KEY (the name is who the key belongs to)")
            }
            let name = String(trimmed[..<colon])
            let key = String(trimmed[trimmed.index(after: colon)...])
            guard !name.isEmpty, name.count <= 32, name.utf8.allSatisfy(Self.isNameByte) else {
                throw SettingsError("\(origin), item \(index + 1): the name must be 1 to 32 of A-Z a-z 0-9 . _ -")
            }
            guard key.utf8.count >= 16 else {
                throw SettingsError("\(origin), key of '\(name)': a key must be at least 16 characters")
            }
            guard names.insert(name).inserted else {
                throw SettingsError("\(origin): the name '\(name)' appears twice")
            }
            entries.append(Entry(principal: name, key: Array(key.utf8)))
        }
        self.entries = entries
    }

    public var isEmpty: Bool { entries.isEmpty }
    /// The principals the keys belong to.
    public var principals: [String] { entries.map(\.principal) }
    public var count: Int { entries.count }

    /// The principal a presented key belongs to, compared in constant time; nil when none.
    func principal(forKey presented: String) -> String? {
        let bytes = Array(presented.utf8)
        var match: String?
        for entry in entries where constantTimeEqual(entry.key, bytes) {
            match = entry.principal
        }
        return match
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}
