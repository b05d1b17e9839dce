import Configuration
import Foundation
import Logging
import ServiceLifecycle
import Settings
import Synchronization
import SystemPackage

/// The client keys a worker checks now: those it started with, replaced whenever the
/// `api_keys_file` changes (rotating a key needs no restart).
final class ClientKeys: Sendable {
    private let current: Mutex<APIKeys>

    init(_ keys: APIKeys) {
        current = Mutex(keys)
    }

    var keys: APIKeys { current.withLock { $0 } }
    var isEmpty: Bool { keys.isEmpty }
    var principals: Set<String> { Set(keys.principals) }

    func principal(forKey key: String) -> String? {
        keys.principal(forKey: key)
    }

    func replace(with keys: APIKeys) {
        current.withLock { $0 = keys }
    }
}

/// An `api_keys_file` read as swift-configuration reads a file: one snapshot per version of
/// it. `NAME:KEY` lines, the format the worker starts with; a file that does not parse, or
/// that holds no key at all, is refused, and the keys in use stay.
struct APIKeysSnapshot: FileConfigSnapshot {
    struct ParsingOptions: FileParsingOptions {
        static let `default` = ParsingOptions()
    }

    let providerName: String
    let keys: APIKeys

    init(data: RawSpan, providerName: String, parsingOptions: ParsingOptions) throws {
        self.providerName = providerName
        let text = data.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        do {
            keys = try APIKeys(parsing: text.split(whereSeparator: \.isNewline).map(String.init), origin: providerName)
        } catch {
            Self.logger.error("the client keys file changed but cannot be used; the keys in use are kept", metadata: ["error": "\(error.message)"])
            throw error
        }
        guard !keys.isEmpty else {
            Self.logger.error("the client keys file changed but holds no NAME:KEY line; the keys in use are kept")
            throw SettingsFileError.empty
        }
    }

    private static let logger = Logger(label: "mcp-worker")

    enum SettingsFileError: Error { case empty }

    /// `principals`: the names the keys belong to (never the keys themselves).
    func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        guard key.components == ["principals"], type == .stringArray else { return LookupResult(encodedKey: key.description, value: nil) }
        return LookupResult(encodedKey: key.description, value: ConfigValue(.stringArray(keys.principals), isSecret: false))
    }

    var description: String { "\(providerName)[\(keys.count) keys]" }
    var debugDescription: String { description }
}

/// Watches the `api_keys_file` (every `interval`, and at once on SIGHUP) and puts each new
/// version of it in force: swift-configuration's `ReloadingFileProvider`, run as a service
/// of the worker, with this service taking its snapshots.
struct ClientKeysReloader: Service {
    let provider: ReloadingFileProvider<APIKeysSnapshot>
    let keys: ClientKeys
    let logger: Logger

    init(path: String, interval: Duration, keys: ClientKeys, logger: Logger) async throws {
        provider = try await ReloadingFileProvider<APIKeysSnapshot>(
            filePath: FilePath(path), pollInterval: interval, logger: logger)
        self.keys = keys
        self.logger = logger
    }

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await provider.run() }
            group.addTask {
                try await cancelWhenGracefulShutdown {
                    try await provider.watchSnapshot { updates in
                        // The first is the file as the worker started with it.
                        var first = true
                        for await snapshot in updates {
                            guard let file = snapshot as? APIKeysSnapshot else { continue }
                            keys.replace(with: file.keys)
                            if !first { logger.notice("client keys reloaded", metadata: ["principals": "\(file.keys.principals.sorted())"]) }
                            first = false
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
