import Foundation
import Logging

/// One place that answers "what is setting X?" for an executable.
///
/// Precedence (DESIGN.md): a command-line flag, then an environment variable, then a key in
/// the config file, then the default. Key `max_body_bytes` of executable prefix
/// `DURABLE_HOST` is flag `--max-body-bytes`, variable `DURABLE_HOST_MAX_BODY_BYTES` and
/// config key `max_body_bytes`. A config file with a key nobody reads is refused, so a typo
/// never silently falls back to a default.
public struct Settings: Sendable {
    /// Where a value came from, for error messages and the start-up summary.
    public enum Origin: Sendable, Hashable, CustomStringConvertible {
        case flag(String)
        case environment(String)
        case file(path: String, key: String)
        case defaultValue

        public var description: String {
            switch self {
            case .flag(let name): "flag --\(name)"
            case .environment(let name): "environment variable \(name)"
            case .file(let path, let key): "config key '\(key)' in \(path)"
            case .defaultValue: "default"
            }
        }
    }

    public let environmentPrefix: String
    public let environment: [String: String]
    public let configPath: String?
    private let file: [String: Value]

    /// A value from a config file: JSON scalars and lists of scalars.
    enum Value: Sendable {
        case text(String)
        case list([String])
    }

    /// Reads the config file, if any, and refuses keys outside `knownKeys`.
    public init(
        environmentPrefix: String,
        configPath: String?,
        knownKeys: Set<String>,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(SettingsError) {
        self.environmentPrefix = environmentPrefix
        self.environment = environment
        self.configPath = configPath
        guard let configPath else {
            file = [:]
            return
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: configPath))
        } catch {
            throw SettingsError("cannot read config file \(configPath): \(error.localizedDescription)")
        }
        let object: [String: ConfigValue]
        do {
            object = try JSONDecoder().decode([String: ConfigValue].self, from: data)
        } catch {
            throw SettingsError("config file \(configPath) must be a JSON object of strings, numbers, booleans or lists of them")
        }
        var values: [String: Value] = [:]
        for (key, value) in object {
            guard knownKeys.contains(key) else {
                let known = knownKeys.sorted().joined(separator: ", ")
                throw SettingsError("config key '\(key)' in \(configPath) is not a setting of this program (known: \(known))")
            }
            values[key] = value.value
        }
        file = values
    }

    /// The environment variable that sets `key`.
    public func environmentName(_ key: String) -> String {
        "\(environmentPrefix)_\(key.uppercased())"
    }

    /// The flag that sets `key`.
    public static func flagName(_ key: String) -> String {
        key.replacingOccurrences(of: "_", with: "-")
    }

    /// The raw text of a setting and where it came from, or nil when nothing sets it.
    public func raw(_ key: String, flag: String?) -> (text: String, origin: Origin)? {
        if let flag { return (flag, .flag(Self.flagName(key))) }
        let variable = environmentName(key)
        if let value = environment[variable] { return (value, .environment(variable)) }
        if let configPath, let value = file[key] {
            switch value {
            case .text(let text): return (text, .file(path: configPath, key: key))
            case .list(let items): return (items.joined(separator: ","), .file(path: configPath, key: key))
            }
        }
        return nil
    }

    public func string(_ key: String, flag: String?) -> String? {
        raw(key, flag: flag)?.text
    }

    public func string(_ key: String, flag: String?, default value: String) -> String {
        raw(key, flag: flag)?.text ?? value
    }

    /// A whole number within `range`.
    public func int(_ key: String, flag: Int?, default value: Int, in range: ClosedRange<Int> = 1...Int.max) throws(SettingsError) -> Int {
        guard let (text, origin) = raw(key, flag: flag.map(String.init)) else { return value }
        guard let number = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
            throw SettingsError("\(origin) must be a whole number in \(Self.describe(range)) (got '\(text)')")
        }
        return number
    }

    /// A number of seconds, fractional allowed, within `range`.
    public func seconds(
        _ key: String, flag: Double?, default value: Double, in range: ClosedRange<Double> = 0...Double.greatestFiniteMagnitude
    ) throws(SettingsError) -> Double {
        guard let (text, origin) = raw(key, flag: flag.map { String($0) }) else { return value }
        guard let number = Double(text.trimmingCharacters(in: .whitespaces)), number.isFinite, range.contains(number) else {
            throw SettingsError("\(origin) must be a number of seconds in \(range.lowerBound)...\(range.upperBound) (got '\(text)')")
        }
        return number
    }

    /// true/false, yes/no, 1/0, on/off.
    public func bool(_ key: String, flag: Bool?, default value: Bool) throws(SettingsError) -> Bool {
        guard let (text, origin) = raw(key, flag: flag.map { $0 ? "true" : "false" }) else { return value }
        switch text.lowercased() {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: throw SettingsError("\(origin) must be true or false (got '\(text)')")
        }
    }

    /// A comma-separated list; empty items are dropped.
    public func list(_ key: String, flag: String?) -> [String] {
        guard let (text, _) = raw(key, flag: flag) else { return [] }
        return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// A log level by name.
    public func logLevel(_ key: String, flag: String?, default value: Logger.Level) throws(SettingsError) -> Logger.Level {
        guard let (text, origin) = raw(key, flag: flag) else { return value }
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw SettingsError("\(origin) must be one of \(names) (got '\(text)')")
        }
        return level
    }

    /// One of a fixed set of names (`log_format`: `text` or `json`).
    public func choice<Choice: RawRepresentable & CaseIterable>(
        _ key: String, flag: String?, default value: Choice
    ) throws(SettingsError) -> Choice where Choice.RawValue == String {
        guard let (text, origin) = raw(key, flag: flag) else { return value }
        guard let choice = Choice(rawValue: text.lowercased()) else {
            let names = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            throw SettingsError("\(origin) must be one of \(names) (got '\(text)')")
        }
        return choice
    }

    /// A secret read from a file named by `fileKey`, or else from the environment variable
    /// `variable`. Surrounding white space is dropped; an empty secret counts as none.
    public func secret(fileKey: String, fileFlag: String?, variable: String) throws(SettingsError) -> String? {
        if let (path, origin) = raw(fileKey, flag: fileFlag) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw SettingsError("\(origin) names \(path), which cannot be read")
            }
            let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !secret.isEmpty else { throw SettingsError("\(origin) names \(path), which is empty") }
            return secret
        }
        let secret = environment[variable]?.trimmingCharacters(in: .whitespacesAndNewlines)
        return secret?.isEmpty == false ? secret : nil
    }

    private static func describe(_ range: ClosedRange<Int>) -> String {
        range.upperBound == .max ? "\(range.lowerBound) or more" : "\(range.lowerBound)...\(range.upperBound)"
    }
}

/// A config file's value: a scalar, kept as its text, or a list of scalars.
private struct ConfigValue: Decodable {
    let value: Settings.Value

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let items = try? container.decode([ConfigScalar].self) {
            value = .list(items.map(\.text))
        } else {
            value = .text(try container.decode(ConfigScalar.self).text)
        }
    }
}

private struct ConfigScalar: Decodable {
    let text: String

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self) {
            text = flag ? "true" : "false"
        } else if let number = try? container.decode(Int.self) {
            text = String(number)
        } else if let number = try? container.decode(Double.self) {
            text = String(number)
        } else {
            text = try container.decode(String.self)
        }
    }
}

/// A setting that cannot be used, with a sentence that names the setting and the fix.
public struct SettingsError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
