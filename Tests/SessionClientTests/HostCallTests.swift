import CurlHTTP
import HashRing
import SessionModel
import Testing

@testable import SessionClient

/// `HostCall` decides a host call without I/O: each test feeds it events and checks the
/// actions it asks for.
@Suite("HostCall: the decisions of one call to the durable hosts")
struct HostCallTests {
    static let one = Membership.Member(name: "host-1", address: "127.0.0.1:1")
    static let two = Membership.Member(name: "host-2", address: "127.0.0.1:2")
    static let three = Membership.Member(name: "host-3", address: "127.0.0.1:3")
    static let ring = Membership(version: 1, members: [one, two, three])
    static let policy = RetryPolicy(attempts: 3, initialDelay: .milliseconds(100), jitter: 0.2)

    /// An id, its owner and runner-up under `ring`.
    static let id = "conv:local:call"
    static var owner: Membership.Member { ring.owner(of: id)! }
    static var runnerUp: Membership.Member { ring.runnerUp(of: id)! }

    func call(_ ring: Membership = Self.ring, attempts: Int = 3, mayHold: Bool = true) -> HostCall {
        var policy = Self.policy
        policy.attempts = attempts
        return HostCall(id: Self.id, ring: ring, policy: policy, mayHold: mayHold)
    }

    @Test("a 2xx from the owner ends the call as answered")
    func answered() {
        var call = call()
        #expect(call.start(random: 0.5) == .send(to: Self.owner, holdingFor: nil))
        #expect(call.answered(status: 200, ringVersion: nil, errorCode: nil, random: 0.5) == .finish(.answered(heldBy: nil)))
        #expect(call.observed == [.reachable(Self.owner.name)])
    }

    @Test("a 4xx refusal ends the call at once: retrying cannot help")
    func refused() {
        var call = call()
        _ = call.start(random: 0.5)
        #expect(call.answered(status: 422, ringVersion: nil, errorCode: "limit_exceeded", random: 0.5) == .finish(.refused))
    }

    @Test("5xx and 429 are failed attempts: wait with exponential backoff and jitter, then the owner again")
    func retryableStatuses() {
        var call = call()
        _ = call.start(random: 0.5)
        #expect(call.answered(status: 503, ringVersion: nil, errorCode: "storage_unavailable", random: 0.5) == .wait(.milliseconds(100)))
        #expect(call.waited() == .send(to: Self.owner, holdingFor: nil))
        // random 1.0: the longest wait, 200 ms + 20 %.
        #expect(call.answered(status: 429, ringVersion: nil, errorCode: nil, random: 1.0) == .wait(.milliseconds(240)))
        #expect(call.waited() == .send(to: Self.owner, holdingFor: nil))
        // Attempts used up, the owner answering: no hold, the call is unreachable.
        #expect(call.answered(status: 500, ringVersion: nil, errorCode: nil, random: 0.5) == .finish(.unreachable(reason: "HTTP 500")))
    }

    @Test("no answer: the other members are asked for their ring, then the attempt counts as failed")
    func noAnswerRefreshesTheRing() {
        var call = call()
        _ = call.start(random: 0.5)
        #expect(call.noAnswer("connection refused", random: 0.5) == .refreshRing(except: Self.owner.name))
        #expect(call.ringsRefreshed(Self.ring, random: 0.5) == .wait(.milliseconds(100)))
        #expect(call.observed == [.unreachable(Self.owner.name)])
    }

    @Test("the owner unreachable through every attempt: the call goes to its runner-up, to hold for it")
    func holdsAtTheRunnerUp() {
        var call = call(attempts: 2)
        _ = call.start(random: 0.5)
        _ = call.noAnswer("refused", random: 0.5)
        #expect(call.ringsRefreshed(Self.ring, random: 0.5) == .wait(.milliseconds(100)))
        _ = call.waited()
        _ = call.noAnswer("refused", random: 0.5)
        #expect(call.ringsRefreshed(Self.ring, random: 0.5) == .send(to: Self.runnerUp, holdingFor: Self.owner.name))
        #expect(call.answered(status: 200, ringVersion: nil, errorCode: nil, random: 0.5) == .finish(.answered(heldBy: Self.runnerUp.name)))
    }

    @Test("a shutting-down owner is unreachable too; a storage failure at the owner is not a reason to hold")
    func whatCountsAsUnreachable() {
        var shuttingDown = call(attempts: 1)
        _ = shuttingDown.start(random: 0.5)
        #expect(
            shuttingDown.answered(status: 503, ringVersion: nil, errorCode: "shutting_down", random: 0.5)
                == .send(to: Self.runnerUp, holdingFor: Self.owner.name))
        var failing = call(attempts: 1)
        _ = failing.start(random: 0.5)
        #expect(failing.answered(status: 503, ringVersion: nil, errorCode: "storage_unavailable", random: 0.5) == .finish(.unreachable(reason: "HTTP 503")))
    }

    @Test("an owner known to be down is skipped: the first send goes to the runner-up")
    func knownDownGoesStraightToTheHolder() {
        var call = call()
        #expect(call.start(ownerKnownDown: true, random: 0.5) == .send(to: Self.runnerUp, holdingFor: Self.owner.name))
        var ringOfOne = HostCall(id: Self.id, ring: Membership(version: 1, members: [Self.one]), policy: Self.policy)
        #expect(ringOfOne.start(ownerKnownDown: true, random: 0.5) == .send(to: Self.one, holdingFor: nil), "no runner-up: the owner it is")
        var readOnly = self.call(mayHold: false)
        #expect(readOnly.start(ownerKnownDown: true, random: 0.5) == .send(to: Self.owner, holdingFor: nil))
    }

    @Test("the holder asks for a seed: it is sent once, then the call again; asked twice, the call gives up")
    func seeding() {
        var call = call()
        _ = call.start(ownerKnownDown: true, random: 0.5)
        #expect(call.answered(status: 409, ringVersion: nil, errorCode: "hint_seed_required", random: 0.5) == .seed(at: Self.runnerUp, owner: Self.owner.name))
        #expect(call.seeded(accepted: true, reason: "") == .send(to: Self.runnerUp, holdingFor: Self.owner.name))
        guard case .finish(.unreachable) = call.answered(status: 409, ringVersion: nil, errorCode: "hint_seed_required", random: 0.5) else {
            Issue.record("a second seed request must end the call")
            return
        }
        var refused = self.call()
        _ = refused.start(ownerKnownDown: true, random: 0.5)
        _ = refused.answered(status: 409, ringVersion: nil, errorCode: "hint_seed_required", random: 0.5)
        guard case .finish(.unreachable) = refused.seeded(accepted: false, reason: "HTTP 500") else {
            Issue.record("a refused seed must end the call")
            return
        }
    }

    @Test("the holder says the owner is back: the call goes to the owner, once")
    func ownerBack() {
        var call = call(attempts: 1)
        _ = call.start(ownerKnownDown: true, random: 0.5)
        #expect(call.answered(status: 503, ringVersion: nil, errorCode: "hint_refused", random: 0.5) == .send(to: Self.owner, holdingFor: nil))
        #expect(call.observed.contains(.reachable(Self.owner.name)))
        _ = call.noAnswer("refused", random: 0.5)
        guard case .finish(.unreachable) = call.ringsRefreshed(Self.ring, random: 0.5) else {
            Issue.record("back at an owner that does not answer after all, the call must not loop")
            return
        }
    }

    @Test("neither the owner nor its runner-up answers: unreachable, the shell's last resort")
    func bothDown() {
        var call = call()
        _ = call.start(ownerKnownDown: true, random: 0.5)
        guard case .finish(.unreachable(let reason)) = call.noAnswer("refused", random: 0.5) else {
            Issue.record("expected unreachable")
            return
        }
        #expect(reason.contains(Self.runnerUp.name))
    }

    @Test("421 from a host serving a newer ring: read its ring and go to the new owner, not a failed attempt")
    func misdirectedByANewerRing() {
        let four = Membership.Member(name: "host-4", address: "127.0.0.1:4")
        let newer = Membership(version: 2, members: [Self.one, Self.two, Self.three, four])
        // An id the fourth member takes.
        let id = (0..<1_000).map { "moving-\($0)" }.first { newer.owner(of: $0)?.name == "host-4" }!
        var call = HostCall(id: id, ring: Self.ring, policy: Self.policy)
        let first = Self.ring.owner(of: id)!
        #expect(call.start(random: 0.5) == .send(to: first, holdingFor: nil))
        #expect(call.answered(status: 421, ringVersion: 2, errorCode: "misdirected", random: 0.5) == .readRing(from: first))
        #expect(call.ringRead(RingInfo(node: first.name, membership: newer), ring: newer, random: 0.5) == .send(to: four, holdingFor: nil))
        #expect(call.attempts == 1, "the redirect is not a failed attempt")
        // Redirected once already: another 421 at the same version is a disagreement.
        #expect(call.answered(status: 421, ringVersion: 2, errorCode: "misdirected", random: 0.5) == .readRing(from: four))
        #expect(call.ringRead(RingInfo(node: "host-4", membership: newer), ring: newer, random: 0.5) == .finish(.refused))
    }

    @Test("a call follows one ring change, not a chain of them: a second redirect ends it")
    func oneRedirectOnly() {
        let four = Membership.Member(name: "host-4", address: "127.0.0.1:4")
        let second = Membership(version: 2, members: [Self.one, Self.two, Self.three, four])
        let third = Membership(version: 3, members: [Self.one, Self.two, Self.three])
        let id = (0..<1_000).map { "moving-\($0)" }.first { second.owner(of: $0)?.name == "host-4" }!
        var call = HostCall(id: id, ring: Self.ring, policy: Self.policy)
        let first = Self.ring.owner(of: id)!
        _ = call.start(random: 0.5)
        _ = call.answered(status: 421, ringVersion: 2, errorCode: "misdirected", random: 0.5)
        #expect(call.ringRead(RingInfo(node: first.name, membership: second), ring: second, random: 0.5) == .send(to: four, holdingFor: nil))
        #expect(call.answered(status: 421, ringVersion: 3, errorCode: "misdirected", random: 0.5) == .readRing(from: four))
        #expect(call.ringRead(RingInfo(node: "host-4", membership: third), ring: third, random: 0.5) == .finish(.refused))
    }

    @Test("421 from a host behind our ring: it has not heard of the change yet, so wait and retry")
    func misdirectedByAnOlderRing() {
        let newer = Membership(version: 3, members: [Self.one, Self.two, Self.three])
        var call = call(newer)
        _ = call.start(random: 0.5)
        #expect(call.answered(status: 421, ringVersion: 2, errorCode: "misdirected", random: 0.5) == .wait(.milliseconds(100)))
    }

    @Test("421 at the same version: the members disagree, and the call ends refused; an unreadable ring is waited out")
    func misdirectedAtTheSameVersion() {
        var call = call()
        _ = call.start(random: 0.5)
        #expect(call.answered(status: 421, ringVersion: 1, errorCode: "misdirected", random: 0.5) == .readRing(from: Self.owner))
        #expect(call.ringRead(RingInfo(node: Self.owner.name, membership: Self.ring), ring: Self.ring, random: 0.5) == .finish(.refused))
        var unreadable = self.call()
        _ = unreadable.start(random: 0.5)
        _ = unreadable.answered(status: 421, ringVersion: nil, errorCode: "misdirected", random: 0.5)
        #expect(unreadable.ringRead(nil, ring: Self.ring, random: 0.5) == .wait(.milliseconds(100)))
    }

    @Test("a newer ring learned while refreshing after no answer routes the retry")
    func ringLearnedWhileRefreshing() {
        var call = call()
        _ = call.start(random: 0.5)
        _ = call.noAnswer("refused", random: 0.5)
        let without = Membership(version: 2, members: [Self.one, Self.two, Self.three].filter { $0 != Self.owner })
        #expect(call.ringsRefreshed(without, random: 0.5) == .wait(.milliseconds(100)))
        #expect(call.waited() == .send(to: without.owner(of: Self.id)!, holdingFor: nil))
    }
}

@Suite("RetryPolicy: one rule for what is worth another attempt")
struct RetryPolicyTests {
    @Test("408, 429 and server failures are retried; client errors, 501 and 505 are not")
    func retryable() {
        for status in [408, 429, 500, 502, 503, 504, 507, 599] { #expect(RetryPolicy.isRetryable(status: status), "\(status)") }
        for status in [200, 301, 400, 401, 403, 404, 409, 413, 421, 422, 501, 505] { #expect(!RetryPolicy.isRetryable(status: status), "\(status)") }
    }

    @Test("the wait doubles per attempt within its jitter, and ends after the last attempt")
    func delays() {
        let policy = RetryPolicy(attempts: 4, initialDelay: .milliseconds(100), jitter: 0.5)
        #expect(policy.delay(afterAttempt: 1, random: 0.5) == .milliseconds(100))
        #expect(policy.delay(afterAttempt: 2, random: 0.5) == .milliseconds(200))
        #expect(policy.delay(afterAttempt: 3, random: 0) == .milliseconds(200), "the low end of the jitter: 400 ms x 0.5")
        #expect(policy.delay(afterAttempt: 3, random: 1) == .milliseconds(600))
        #expect(policy.delay(afterAttempt: 4, random: 0.5) == nil)
    }
}
