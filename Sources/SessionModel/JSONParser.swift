import Foundation

/// Why a text is not JSON this project accepts, with where it went wrong.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    /// Byte offset of the fault in the text.
    public let offset: Int

    public var description: String { "\(message) (at byte \(offset))" }
}

/// A small, strict JSON parser into `JSONValue`, used for every JSON a caller sends.
///
/// Strict where RFC 8259 leaves room, so that every service reads a text the same way:
/// - UTF-8 only: a byte order mark, UTF-16 text or an invalid UTF-8 sequence is refused
///   (RFC 8259, section 8.1), never guessed at or repaired;
/// - a key repeated in one object is refused (section 4 leaves the meaning open: one
///   service keeping the first value and another the last is how requests get smuggled);
/// - a lone surrogate escape (`"\ud800"`) is refused: it has no UTF-8 form, so it could not
///   round-trip;
/// - an integer that does not fit in 64 bits is refused by default, rather than silently
///   becoming an inexact double (`bigIntegers: .asDouble` keeps the old reading, for answers
///   of upstream services).
///
/// Numbers are converted with Swift's correctly rounded `Double(_:)` (`JSONSerialization` on
/// Linux rounds some doubles wrongly: 1795572992.8560202 comes back as ...205), and the bytes
/// are read directly, which is several times faster than a `Decodable` decode.
struct JSONParser {
    enum BigIntegers: Sendable {
        case refuse
        case asDouble
    }

    private let bytes: [UInt8]
    private let bigIntegers: BigIntegers
    private var index = 0
    private var depth = 0
    private static let maxDepth = 512

    private init(_ data: Data, bigIntegers: BigIntegers) {
        bytes = [UInt8](data)
        self.bigIntegers = bigIntegers
    }

    static func parse(_ data: Data, bigIntegers: BigIntegers = .refuse) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(data, bigIntegers: bigIntegers)
        if parser.bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            throw JSONParseError(message: "the text starts with a byte order mark; JSON must be UTF-8 without one", offset: 0)
        }
        if parser.bytes.count >= 2,
            parser.bytes[0] == 0 || parser.bytes[1] == 0 || parser.bytes.starts(with: [0xFF, 0xFE])
                || parser.bytes.starts(with: [0xFE, 0xFF])
        {
            throw JSONParseError(message: "the text looks like UTF-16 or UTF-32; JSON must be UTF-8", offset: 0)
        }
        let value = try parser.value()
        parser.skipSpace()
        guard parser.index == parser.bytes.count else { throw parser.fail("unexpected text after the JSON value") }
        return value
    }

    private func fail(_ message: String) -> JSONParseError {
        JSONParseError(message: message, offset: index)
    }

    private mutating func skipSpace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    private mutating func value() throws(JSONParseError) -> JSONValue {
        skipSpace()
        guard index < bytes.count else { throw fail("the text ends where a value should be") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        default: return try number()
        }
    }

    private mutating func literal(_ text: StaticString, _ value: JSONValue) throws(JSONParseError) -> JSONValue {
        let count = text.utf8CodeUnitCount
        let matches =
            index + count <= bytes.count
            && text.withUTF8Buffer { expected in
                bytes[index..<(index + count)].elementsEqual(expected)
            }
        guard matches else { throw fail("unexpected text where a value should be") }
        index += count
        return value
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        guard depth <= Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
    }

    private mutating func object() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var object: [String: JSONValue] = [:]
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(object)
        }
        while true {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("an object key must be a string") }
            let keyStart = index
            let key = try string()
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("':' expected after an object key") }
            index += 1
            let value = try value()
            guard object.updateValue(value, forKey: key) == nil else {
                throw JSONParseError(message: "the key \"\(key.prefix(64))\" appears twice in one object", offset: keyStart)
            }
            skipSpace()
            guard index < bytes.count else { throw fail("the text ends inside an object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(object)
            } else {
                throw fail("',' or '}' expected in an object")
            }
        }
    }

    private mutating func array() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var array: [JSONValue] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(array)
        }
        while true {
            array.append(try value())
            skipSpace()
            guard index < bytes.count else { throw fail("the text ends inside an array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(array)
            } else {
                throw fail("',' or ']' expected in an array")
            }
        }
    }

    /// Bytes of a string as UTF-8 text, refusing invalid sequences.
    private func text(_ slice: ArraySlice<UInt8>, at offset: Int) throws(JSONParseError) -> String {
        guard let text = String(validating: slice, as: UTF8.self) else {
            throw JSONParseError(message: "a string holds bytes that are not UTF-8", offset: offset)
        }
        return text
    }

    private mutating func string() throws(JSONParseError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = try text(bytes[start..<index], at: start)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            index += 1
        }
        var output = [UInt8](bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return try text(output[...], at: start)
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw fail("the text ends inside a string") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(escape)
                case UInt8(ascii: "b"): output.append(0x08)
                case UInt8(ascii: "f"): output.append(0x0C)
                case UInt8(ascii: "n"): output.append(0x0A)
                case UInt8(ascii: "r"): output.append(0x0D)
                case UInt8(ascii: "t"): output.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw fail("a lone surrogate \\u\(String(scalar, radix: 16)) has no UTF-8 form")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else {
                            throw fail("a lone surrogate \\u\(String(scalar, radix: 16)) has no UTF-8 form")
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let unicode = Unicode.Scalar(scalar) else {
                        throw fail("a lone surrogate \\u\(String(scalar, radix: 16)) has no UTF-8 form")
                    }
                    output.append(contentsOf: String(unicode).utf8)
                default:
                    throw fail("unknown escape in a string")
                }
            default:
                guard byte >= 0x20 else { throw fail("a control character must be escaped in a string") }
                output.append(byte)
                index += 1
            }
        }
        throw fail("the text ends inside a string")
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("\\u needs four hexadecimal digits") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw fail("\\u needs four hexadecimal digits")
            }
            value = value * 16 + digit
            index += 1
        }
        return value
    }

    private mutating func number() throws(JSONParseError) -> JSONValue {
        let start = index
        var integral = true
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        let digitsStart = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                index += 1
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") || byte == UInt8(ascii: "+")
                || byte == UInt8(ascii: "-")
            {
                integral = false
                index += 1
            } else {
                break
            }
        }
        guard index > digitsStart else {
            index = start
            throw fail("unexpected text where a value should be")
        }
        // JSON forbids leading zeros ("01").
        if bytes[digitsStart] == UInt8(ascii: "0"), index > digitsStart + 1,
            bytes[digitsStart + 1] >= UInt8(ascii: "0"), bytes[digitsStart + 1] <= UInt8(ascii: "9")
        {
            throw JSONParseError(message: "a number must not start with 0", offset: start)
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if integral {
            if let number = Int64(text) { return .int(number) }
            if bigIntegers == .refuse {
                throw JSONParseError(message: "the integer \(text.prefix(40)) does not fit in 64 bits", offset: start)
            }
        }
        guard let number = Double(text), bytes[index - 1] >= UInt8(ascii: "0"), bytes[index - 1] <= UInt8(ascii: "9") else {
            throw JSONParseError(message: "malformed number", offset: start)
        }
        guard number.isFinite else {
            throw JSONParseError(message: "the number \(text.prefix(40)) is too large", offset: start)
        }
        return .double(number)
    }
}
