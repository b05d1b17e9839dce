import Testing

@testable import DurableHost

@Suite("A hinted request at the owner's runner-up: serve, ask for a seed, or send it back to the owner")
struct HintedRequestTests {
    @Test("a copy that needs no seed is served at once, with no probe of the owner")
    func served() {
        var request = HintedRequest()
        #expect(request.checked(needsSeed: false) == .serve)
        #expect(request.ownerAnswered(false) == .sendToOwner, "nothing is probed once it is decided")
    }

    @Test("a copy that would start now asks the caller for its seed only while the owner still does not answer")
    func seedOrOwner() {
        var stillDown = HintedRequest()
        #expect(stillDown.checked(needsSeed: true) == .probeOwner)
        #expect(stillDown.ownerAnswered(false) == .askForSeed)
        var back = HintedRequest()
        #expect(back.checked(needsSeed: true) == .probeOwner)
        #expect(back.ownerAnswered(true) == .sendToOwner, "an owner that came back takes the request itself")
    }

    @Test("steps out of order never serve")
    func outOfOrder() {
        var request = HintedRequest()
        #expect(request.ownerAnswered(false) == .sendToOwner)
        _ = request.checked(needsSeed: true)
        #expect(request.checked(needsSeed: false) == .sendToOwner)
    }
}
