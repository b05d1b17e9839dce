import Foundation
import Logging
import ServerRuntime
import ServiceLifecycle
import SessionClient
import SessionModel
import Synchronization

/// What every worker refuses of tokens it would otherwise accept: those of revoked grants, and
/// those issued to a principal before it was removed. Read from the hosts' `oauth:revoked:`
/// records every `interval`, so a revocation made on any worker holds on all of them within it;
/// the worker that revokes knows at once.
public final class Revocations: Service, Sendable {
    struct View: Sendable, Equatable {
        var grants: Set<String> = []
        /// Principal → when it was removed: tokens issued before are refused.
        var principals: [String: Double] = [:]

        func refuses(_ token: VerifiedToken) -> Bool {
            grants.contains(token.grantID) || principals[token.principal].map { token.issuedAt <= $0 } ?? false
        }

        /// The view the records under `oauth:revoked:` make.
        static func reading(_ summaries: [HostAPI.SessionSummary]) -> View {
            var view = View()
            let grantPrefix = StorageKeys.signIn("revoked", "grant", "")
            let principalPrefix = StorageKeys.signIn("revoked", "principal", "")
            for summary in summaries {
                if summary.id.hasPrefix(grantPrefix) {
                    view.grants.insert(String(summary.id.dropFirst(grantPrefix.count)))
                } else if summary.id.hasPrefix(principalPrefix), let at = summary.metadata["at"]?.numberValue {
                    let principal = String(summary.id.dropFirst(principalPrefix.count))
                    view.principals[principal] = max(at, view.principals[principal] ?? 0)
                }
            }
            return view
        }
    }

    let store: any SessionManager
    let interval: Duration
    let clock: ServerClock
    let logger: Logger
    private let view = Mutex(View())
    private let known = Mutex<View>(View())

    init(store: any SessionManager, interval: Duration, clock: ServerClock, logger: Logger) {
        self.store = store
        self.interval = interval
        self.clock = clock
        self.logger = logger
    }

    func refuses(_ token: VerifiedToken) -> Bool {
        view.withLock { $0.refuses(token) }
    }

    /// What this worker revoked itself, in force here at once.
    func note(grant: String) {
        known.withLock { _ = $0.grants.insert(grant) }
        view.withLock { _ = $0.grants.insert(grant) }
    }

    func note(principal: String, at time: Double) {
        known.withLock { $0.principals[principal] = time }
        view.withLock { $0.principals[principal] = max(time, $0.principals[principal] ?? 0) }
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await poll()
            try? await cancelWhenGracefulShutdown { try await self.clock.sleep(for: self.interval) }
        }
    }

    /// Reads every revocation the hosts hold (they expire once no token they refuse can live).
    func poll() async {
        var summaries: [HostAPI.SessionSummary] = []
        var before: HostAPI.ListCursor?
        do {
            repeat {
                let page = try await store.list(SessionListing(prefix: StorageKeys.signIn("revoked", ""), before: before, limit: SessionListing.maxLimit))
                summaries += page.summaries
                before = page.next
            } while before != nil && summaries.count < 100_000
        } catch {
            logger.warning("the revocations could not be read; the last ones read stay in force", metadata: ["error": "\(error.message)"])
            return
        }
        var fresh = View.reading(summaries)
        // What this worker revoked since may not be listed yet.
        let own = known.withLock { $0 }
        fresh.grants.formUnion(own.grants)
        for (principal, at) in own.principals { fresh.principals[principal] = max(at, fresh.principals[principal] ?? 0) }
        view.withLock { $0 = fresh }
    }
}
