import Foundation
import HashRing

/// A `HOST:PORT` to listen on or to call.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (which means 127.0.0.1).
    public init(parsing text: String) throws(SettingsError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let colon = trimmed.lastIndex(of: ":"), let port = Int(trimmed[trimmed.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw SettingsError("'\(text)' is not HOST:PORT with a port in 0...65535")
        }
        var host = String(trimmed[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "127.0.0.1" : host
        self.port = port
    }

    /// Whether only this machine can reach the address.
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A named member of the ring: `NAME=HOST:PORT`.
public struct NamedAddress: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var address: ListenAddress

    public init(name: String, address: ListenAddress) {
        self.name = name
        self.address = address
    }

    /// Parses `NAME=HOST:PORT`.
    public init(parsing text: String) throws(SettingsError) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty else {
            throw SettingsError("'\(text)' is not NAME=HOST:PORT")
        }
        guard parts[0].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ",") }) else {
            throw SettingsError("node name '\(parts[0])' must be visible ASCII without commas")
        }
        name = parts[0]
        address = try ListenAddress(parsing: parts[1])
    }

    /// Parses a comma-separated list, refusing duplicate names.
    public static func parseList(_ items: [String], origin: String) throws(SettingsError) -> [NamedAddress] {
        var seen: Set<String> = []
        var result: [NamedAddress] = []
        for item in items {
            let member: NamedAddress
            do {
                member = try NamedAddress(parsing: item)
            } catch {
                throw SettingsError("\(origin): \(error.message)")
            }
            guard seen.insert(member.name).inserted else {
                throw SettingsError("\(origin): node name '\(member.name)' appears twice")
            }
            result.append(member)
        }
        return result
    }

    public var description: String { "\(name)=\(address)" }
}

extension Membership {
    /// The ring of configured hosts (`--peers`, `--hosts`) at `version`.
    public init(version: Int, hosts: [NamedAddress]) {
        self.init(version: version, members: hosts.map { Member(name: $0.name, address: "\($0.address)") })
    }
}
