import Clocks
import ServerRuntime
import Testing

@testable import DurableHost

/// The lease decisions of a host on shared storage, with the time as an input: no database, no sleeping.
@Suite("A host's lease: when it may serve, when it may evict, what it adopts")
struct LeaseStateTests {
    @Test("a host serves only within a lease of its last renewal (counted from when it asked), while a member and not leaving")
    func serving() async {
        let time = TestClock()
        let clock = ServerClock.driven(by: time)
        var lease = LeaseState(leaseDuration: .seconds(3))
        #expect(!lease.isServing(now: clock.now, isMember: true), "no lease yet")
        let asked = clock.now
        await time.advance(by: .milliseconds(400))
        lease.renewed(asked: asked)
        #expect(lease.isServing(now: clock.now, isMember: true))
        #expect(!lease.isServing(now: clock.now, isMember: false), "not a member of the ring it serves by")
        await time.advance(by: .milliseconds(2_600))
        #expect(!lease.isServing(now: clock.now, isMember: true), "three seconds after asking, the database's lease may be over")
        #expect(lease.leaseAge(now: clock.now) == .seconds(3))
        lease.renewed(asked: clock.now)
        lease.leave()
        #expect(!lease.isServing(now: clock.now, isMember: true), "leaving: stop serving at once")
        lease.lost()
        #expect(lease.leaseAge(now: clock.now) == nil)
    }

    @Test("expired members are evicted only after the database answered for a whole lease without a break")
    func eviction() async {
        let time = TestClock()
        let clock = ServerClock.driven(by: time)
        var lease = LeaseState(leaseDuration: .seconds(3))
        #expect(!lease.mayEvict(now: clock.now))
        lease.reached(at: clock.now)
        await time.advance(by: .seconds(2))
        lease.reached(at: clock.now)
        #expect(!lease.mayEvict(now: clock.now), "connected for 2 s only")
        await time.advance(by: .seconds(1))
        #expect(lease.mayEvict(now: clock.now))
        let first = lease.unreachable("down")
        let second = lease.unreachable("still down")
        #expect(first, "the first failure is the one worth logging")
        #expect(!second)
        #expect(!lease.mayEvict(now: clock.now), "an outage starts the wait again")
        lease.reached(at: clock.now)
        #expect(lease.lastError == nil && !lease.mayEvict(now: clock.now))
    }

    @Test("a newer ring version is adopted, never an older or the same one")
    func adoption() {
        var lease = LeaseState(leaseDuration: .seconds(3))
        let answers = [lease.adopt(version: 2), lease.adopt(version: 2), lease.adopt(version: 1), lease.adopt(version: 5)]
        #expect(answers == [true, false, false, true])
        #expect(lease.ringVersion == 5)
    }
}
