import Foundation

/// Any JSON value: session metadata is free-form, so it is kept as a tree.
///
/// Integers and floating-point numbers are kept apart so that an id such as
/// `12345678901234567` round-trips exactly.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}

/// A JSON object: the shape of session metadata.
public typealias JSONObject = [String: JSONValue]

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

extension JSONValue {
    /// The string, when this is a string.
    /// An integer or a double, as a double.
    public var numberValue: Double? {
        switch self {
        case .int(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The object, when this is an object.
    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The number as a `Double`, when this is a number.
    public var doubleValue: Double? {
        switch self {
        case .int(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

    /// The boolean, when this is a boolean.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}

extension JSONObject {
    /// The object's compact JSON encoding, keys sorted so equal objects encode equally;
    /// written directly (every write that changes metadata stores it).
    public func encodedJSON() -> Data {
        Data(JSONValue.object(self).jsonText().utf8)
    }
}

/// Shared coders: creating a `JSONEncoder` per call costs more than the encoding of a small value.
public enum JSONCoding {
    /// Keys sorted: the same value always encodes to the same bytes.
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    public static let decoder = JSONDecoder()
}

extension JSONValue {
    /// A number as JSON text: integral values without a fraction, others in their shortest
    /// round-tripping form.
    public static func number(_ value: Double) -> String {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return value.isFinite ? "\(value)" : "null"
    }
}

extension JSONValue {
    /// Parses JSON text with `JSONParser`: strict (UTF-8 only, no repeated keys, no lone
    /// surrogates, no integer beyond 64 bits), exact, and several times faster than a
    /// `Decodable` decode of a `JSONValue` (bench/ANALYSIS.md). Nil for text it refuses.
    public static func parse(_ data: Data) -> JSONValue? {
        try? JSONParser.parse(data)
    }

    /// Parses JSON text as `parse(_:)` does, saying why it refuses a text.
    public static func parseStrictly(_ data: Data) throws(JSONParseError) -> JSONValue {
        try JSONParser.parse(data)
    }

    /// Parses an upstream service's answer: as strict, except that an integer beyond 64 bits
    /// becomes the nearest double instead of a refusal (what we cannot change, we read).
    public static func parseLeniently(_ data: Data) -> JSONValue? {
        try? JSONParser.parse(data, bigIntegers: .asDouble)
    }
}

extension HostAPI.Record {
    /// Reads a `GET /sessions/{id}` answer through `JSONValue.parse` (the worker reads one
    /// per MCP request).
    public static func parse(_ data: Data) -> HostAPI.Record? {
        guard case .object(let body)? = JSONValue.parse(data), case .object(let record)? = body["data"],
            let id = record["id"]?.stringValue, let createdAt = record["created_at"]?.numberValue,
            let lastUpdated = record["last_updated"]?.numberValue, let messages = HostAPI.messages(record["messages"] ?? .array([]))
        else { return nil }
        var metadata: JSONObject = [:]
        if case .object(let given)? = record["metadata"] { metadata = given }
        return HostAPI.Record(
            data: SessionRecord(
                id: id, messages: messages, metadata: metadata, createdAt: createdAt, lastUpdated: lastUpdated,
                principal: record["principal"]?.stringValue, expiresAfter: record["expires_after"]?.numberValue))
    }
}

extension HostAPI.History {
    /// Reads a `GET /sessions/{id}/history` answer through `JSONValue.parse`.
    public static func parse(_ data: Data) -> HostAPI.History? {
        guard case .object(let body)? = JSONValue.parse(data), let messages = HostAPI.messages(body["data"] ?? .array([])) else { return nil }
        var metadata: JSONObject = [:]
        if case .object(let given)? = body["metadata"] { metadata = given }
        return HostAPI.History(
            data: messages, metadata: metadata, messageCount: body["message_count"]?.numberValue.map { Int($0) },
            lastUpdated: body["last_updated"]?.numberValue, expiresAt: body["expires_at"]?.numberValue)
    }

    /// This answer's JSON, written directly as bytes (a host answers one per conversation
    /// turn); the same as `JSONCoding.encoder` writes, keys sorted.
    public func encodedJSON() -> Data {
        var output: [UInt8] = []
        output.reserveCapacity(64 + data.reduce(0) { $0 + $1.content.utf8.count + 64 })
        output.append(contentsOf: #"{"data":["#.utf8)
        for (index, message) in data.enumerated() {
            if index > 0 { output.append(UInt8(ascii: ",")) }
            output.append(contentsOf: #"{"content":"#.utf8)
            JSONValue.writeString(message.content, toBytes: &output)
            output.append(contentsOf: #","role":""#.utf8)
            output.append(contentsOf: message.role.rawValue.utf8)
            output.append(contentsOf: #"","timestamp":"#.utf8)
            output.append(contentsOf: JSONValue.number(message.timestamp).utf8)
            output.append(UInt8(ascii: "}"))
        }
        output.append(contentsOf: "],".utf8)
        if let expiresAt { output.append(contentsOf: #""expires_at":\#(JSONValue.number(expiresAt)),"#.utf8) }
        if let lastUpdated { output.append(contentsOf: #""last_updated":\#(JSONValue.number(lastUpdated)),"#.utf8) }
        if let messageCount { output.append(contentsOf: #""message_count":\#(messageCount),"#.utf8) }
        output.append(contentsOf: #""metadata":"#.utf8)
        output.append(contentsOf: JSONValue.object(metadata).jsonText().utf8)
        output.append(contentsOf: #","success":\#(success)}"#.utf8)
        return Data(output)
    }
}

extension HostAPI {
    /// Messages from their JSON form; nil when one is malformed.
    static func messages(_ value: JSONValue) -> [Message]? {
        guard case .array(let items) = value else { return nil }
        var messages: [Message] = []
        messages.reserveCapacity(items.count)
        for item in items {
            guard case .object(let message) = item, let role = message["role"]?.stringValue.flatMap(Role.init(rawValue:)),
                let content = message["content"]?.stringValue, let timestamp = message["timestamp"]?.numberValue
            else { return nil }
            messages.append(Message(role: role, content: content, timestamp: timestamp))
        }
        return messages
    }
}

extension JSONValue {
    /// This value as compact JSON text, keys sorted: what `JSONCoding.encoder` writes, without
    /// its cost (a tool's answer is written once per call).
    public func jsonText() -> String {
        var output = ""
        write(to: &output)
        return output
    }

    private func write(to output: inout String) {
        switch self {
        case .null: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .int(let value): output += String(value)
        case .double(let value): output += JSONValue.number(value)
        case .string(let value): JSONValue.writeString(value, to: &output)
        case .array(let values):
            output += "["
            for (index, value) in values.enumerated() {
                if index > 0 { output += "," }
                value.write(to: &output)
            }
            output += "]"
        case .object(let object):
            output += "{"
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { output += "," }
                JSONValue.writeString(key, to: &output)
                output += ":"
                object[key]!.write(to: &output)
            }
            output += "}"
        }
    }

    /// Writes `text` as a JSON string literal into bytes: one pass over its UTF-8, runs
    /// without escapes copied whole.
    public static func writeString(_ text: String, toBytes output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            for (index, byte) in bytes.enumerated() where byte < 0x20 || byte == 0x22 || byte == 0x5C {
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                switch byte {
                case 0x22: output.append(contentsOf: #"\""#.utf8)
                case 0x5C: output.append(contentsOf: #"\\"#.utf8)
                case 0x0A: output.append(contentsOf: #"\n"#.utf8)
                case 0x0D: output.append(contentsOf: #"\r"#.utf8)
                case 0x09: output.append(contentsOf: #"\t"#.utf8)
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    output.append(contentsOf: #"\u00"#.utf8)
                    output.append(hex[Int(byte >> 4)])
                    output.append(hex[Int(byte & 0x0F)])
                }
                start = index + 1
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        }
        output.append(UInt8(ascii: "\""))
    }

    /// Writes `text` as a JSON string literal.
    public static func writeString(_ text: String, to output: inout String) {
        output += "\""
        var plain = true
        for byte in text.utf8 where byte < 0x20 || byte == 0x22 || byte == 0x5C {
            plain = false
            break
        }
        if plain {
            output += text
        } else {
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": output += "\\\""
                case "\\": output += "\\\\"
                case "\n": output += "\\n"
                case "\r": output += "\\r"
                case "\t": output += "\\t"
                case _ where scalar.value < 0x20:
                    let hex = String(scalar.value, radix: 16)
                    output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: output.unicodeScalars.append(scalar)
                }
            }
        }
        output += "\""
    }
}
