import CurlHTTP
import HashRing
import HostLink
import Logging
import Metrics
import SessionModel
import Synchronization

/// How a worker follows the hosts' ring: the ring it routes by, a newer one adopted from any
/// host that tells of it (a 421, `/ring`, a health probe), every member asked when one does
/// not answer, and the hosts found unreachable probed until they answer again.
final class RingFollower: Sendable {
    private let routing: Mutex<Membership>
    /// The hosts found unreachable, skipped straight to their runner-up until a probe finds them back.
    let availability = HostAvailability()
    private let hosts: HostClient
    private let timeout: Duration
    private let logger: Logger
    private let misdirected = Metrics.Counter(label: "worker_host_misdirected_total")

    init(configured: Membership, hosts: HostClient, timeout: Duration, logger: Logger) {
        routing = Mutex(configured)
        self.hosts = hosts
        self.timeout = timeout
        self.logger = logger
    }

    /// The ring calls are routed by now.
    var membership: Membership { routing.withLock { $0 } }

    /// Whether a ring a host told of replaces `current`: a newer one; or one kept in the
    /// hosts' database, which replaces the configured `--hosts` (a seed list then) whatever
    /// the versions.
    static func adopts(_ info: RingInfo, over current: Membership) -> Bool {
        guard !info.members.isEmpty else { return false }
        return info.version > current.version || (info.lease != nil && current.lease == nil)
    }

    /// Adopts `info` if it replaces the ring in use; returns whether it did.
    @discardableResult
    func adopt(_ info: RingInfo, from host: String) -> Bool {
        let adopted = routing.withLock { current -> Bool in
            guard Self.adopts(info, over: current) else { return false }
            current = info.membership
            return true
        }
        if adopted {
            logger.notice(
                "adopted a newer ring from a host", metadata: ["host": "\(host)", "version": "\(info.version)", "members": "\(info.members.map(\.name))"])
        }
        return adopted
    }

    /// A ring a host answered elsewhere (the worker's health probe).
    func consider(_ info: RingInfo, from name: String) {
        guard info.members.contains(where: { $0.name == name }) || membership.member(named: name) != nil else { return }
        adopt(info, from: name)
    }

    /// A host answered that another owns `sessionID`: its ring, adopted if newer.
    func learn(from member: Membership.Member, refusing sessionID: String) async -> RingInfo? {
        misdirected.increment()
        let info = await ring(of: member)
        if let info {
            adopt(info, from: member.name)
        } else {
            logger.warning(
                "a host refused an id as not its own, and its ring could not be read", metadata: ["host": "\(member.name)", "session": "\(sessionID)"])
        }
        return info
    }

    /// Asks the members, other than `failing`, for their ring and adopts the newest: how a
    /// worker learns of a change without being told (a removed host no longer answers).
    func refresh(except failing: String? = nil) async {
        // Every member at once: members may be a change apart.
        let members = membership.members.filter { $0.name != failing }
        let answers = await withTaskGroup(of: (String, RingInfo?).self) { group in
            for member in members { group.addTask { (member.name, await self.ring(of: member)) } }
            var answers: [(String, RingInfo)] = []
            for await (name, info) in group { if let info { answers.append((name, info)) } }
            return answers
        }
        if let (name, newest) = answers.max(by: { $0.1.version < $1.1.version }) { adopt(newest, from: name) }
    }

    /// Asks each host found unreachable whether it answers again (`GET /health`).
    func probeDownHosts() async {
        let ring = membership
        for name in availability.downHosts {
            guard let member = ring.member(named: name) else {
                availability.markUp(name)
                continue
            }
            if let response = try? await hosts.send(.health, to: member.address, timeout: .milliseconds(500)), response.status == 200 {
                availability.markUp(name)
                logger.notice("a host answers again", metadata: ["host": "\(name)"])
            }
        }
    }

    private func ring(of host: Membership.Member) async -> RingInfo? {
        try? await hosts.ring(at: host.address, timeout: timeout).get()
    }
}
