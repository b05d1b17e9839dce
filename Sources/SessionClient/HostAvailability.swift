import Synchronization

/// The hosts this worker found unreachable.
///
/// A call for a session whose owner is here goes straight to the owner's runner-up instead of
/// waiting out its attempts again; the manager's service loop probes these hosts and takes
/// each off the list once it answers (as does any call it answers).
final class HostAvailability: Sendable {
    private let down = Mutex<Set<String>>([])

    func isDown(_ name: String) -> Bool {
        down.withLock { $0.contains(name) }
    }

    /// What a call found, in order: the last word about a host is what counts.
    func record(_ observations: [HostCall.Reachability]) {
        guard !observations.isEmpty else { return }
        down.withLock { down in
            for observation in observations {
                switch observation {
                case .reachable(let name): down.remove(name)
                case .unreachable(let name): down.insert(name)
                }
            }
        }
    }

    func markUp(_ name: String) {
        _ = down.withLock { $0.remove(name) }
    }

    /// The hosts found unreachable, by name.
    var downHosts: [String] {
        down.withLock { $0.sorted() }
    }
}
